"""Networks that more than one agent builds the same way."""

from tf_agents.agents.ddpg import critic_network


def joint_critic(observation_spec, action_spec, layers: tuple[int, ...]):
  """Q(observation, action) from dense layers over both joined (SAC's and TD3's critic)."""
  return critic_network.CriticNetwork(
      (observation_spec, action_spec), joint_fc_layer_params=layers,
      kernel_initializer="glorot_uniform", last_kernel_initializer="glorot_uniform")
