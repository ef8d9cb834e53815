"""The job as separate roles: a replay server, N collectors and a learner.

`trainer.launch` runs them all on one machine and supervises them; on a
cluster each is a command of its own (`trainer.replay_server`,
`trainer.collect --task=I`, `trainer.learn`) on a shared run directory.
"""
