"""Where a Reverb server listens: one address, never every interface unless asked.

Reverb 0.14's server always listens on every interface (`[::]:PORT`) and has no
authentication, so anyone who reaches the port may write to its tables. The
processes that serve a replay therefore run with `bindhost.c` in LD_PRELOAD
(compiled at install), which turns that wildcard bind into a bind to one
address: for the replay server role, the one `--bind` names, by default the
address `--host` resolves to (loopback under `trainer.launch`); for
`trainer.train`, whose in-process server only it uses, loopback. After a server
starts, `check` reads /proc/net/tcp{,6} to see what it really listens on.

Nothing here imports TensorFlow: `reexec` runs first thing in the process.
"""

import glob
import os
import socket
import sys

from trainer.errors import ConfigError

ALL = "all"  # --bind=all: every interface, knowingly
LOOPBACK = "127.0.0.1"
ADDRESS_ENV = "TRAINER_BIND_ADDRESS"
_SHIMS = glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)), "_bindhost*.so"))
SHIM = _SHIMS[0] if _SHIMS else None


def resolve(host: str) -> str | None:
  """The IP address to listen on for `host` (a name or a literal; IPv4 first),
  or None for `all`."""
  if host == ALL:
    return None
  for family in (socket.AF_INET, socket.AF_INET6):
    try:
      address = socket.getaddrinfo(host, None, family, socket.SOCK_STREAM)[0][4][0]
    except (socket.gaierror, IndexError, UnicodeError):
      continue
    return address
  raise ConfigError(f"--bind={host} is not an address of this machine nor a name that resolves; "
                    "pass an IP address of the interface the other roles reach (or --bind=all "
                    "to listen on every interface)")


def loopback_warning(host: str, address: str | None) -> str | None:
  """What to say when a machine's name resolves to loopback (an /etc/hosts
  line such as Debian's 127.0.1.1): other machines cannot reach a server there."""
  if address is None or host == "localhost" or not (address.startswith("127.")
                                                     or address == "::1"):
    return None
  try:
    socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    return None  # a literal address means what it says
  except OSError:
    pass
  return (f"{host} resolves to {address} here, a loopback address: only this machine reaches "
          "the replay server; for roles on other machines pass --bind=ADDRESS (this machine's "
          "address on their network)")


def _flag(argv: list[str], name: str) -> str | None:
  """The last value of `--name=V` or `--name V` in argv (absl's two forms)."""
  value = None
  for i, arg in enumerate(argv):
    if arg.startswith(f"--{name}="):
      value = arg.split("=", 1)[1]
    elif arg == f"--{name}" and i + 1 < len(argv):
      value = argv[i + 1]
  return value


def wanted(argv: list[str], default_host: str) -> str:
  """What the command line asks to listen on: `--bind`, else `--host`, else the
  machine's own name."""
  return _flag(argv, "bind") or _flag(argv, "host") or default_host


def requested(argv: list[str]) -> str | None:
  """The replay server role's address from its command line (None: every
  interface, or an address that does not resolve, which its flags report)."""
  try:
    return resolve(wanted(argv[1:], socket.gethostname()))
  except ConfigError:
    return None


def reexec(argv: list[str], module: str, address: str | None) -> None:
  """Restarts this process (`python -m module`) with the shim preloaded and
  `address` set, unless they are already (or `address` is None, or there is no
  shim: `check` then says so)."""
  if address is None or SHIM is None or os.environ.get(ADDRESS_ENV) == address:
    return
  env = dict(os.environ)
  env[ADDRESS_ENV] = address
  env["LD_PRELOAD"] = " ".join(filter(None, [SHIM, env.get("LD_PRELOAD")]))
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, [sys.executable, "-m", module, *argv[1:]], env)


def _socket_inodes() -> set[str]:
  inodes = set()
  for fd in os.listdir("/proc/self/fd"):
    try:
      target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
      continue
    if target.startswith("socket:["):
      inodes.add(target[len("socket:["):-1])
  return inodes


def _hex_address(text: str) -> str:
  """A /proc/net/tcp{,6} address (32-bit words in host order) as an IP string."""
  raw = b"".join(bytes.fromhex(text[i:i + 8])[::-1] for i in range(0, len(text), 8))
  if len(raw) == 16 and raw[:12] == b"\0" * 10 + b"\xff\xff":
    raw = raw[12:]  # IPv4-mapped
  return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


def listening(port: int) -> list[str]:
  """The addresses this process listens on at `port` ('0.0.0.0' or '::' for every interface)."""
  inodes, found = _socket_inodes(), []
  for table in ("/proc/net/tcp", "/proc/net/tcp6"):
    try:
      with open(table) as f:
        rows = f.read().splitlines()[1:]
    except OSError:
      continue
    for row in rows:
      fields = row.split()
      local, state, inode = fields[1], fields[3], fields[9]
      address, _, hex_port = local.partition(":")
      if state == "0A" and int(hex_port, 16) == port and inode in inodes:
        found.append(_hex_address(address))
  return found


def exposed(found: list[str]) -> bool:
  """Whether `listening`'s addresses include every interface."""
  return any(a in ("0.0.0.0", "::") for a in found)


def why_exposed() -> str:
  return ("trainer's bind library was not built (reinstall with a C compiler: make install)"
          if SHIM is None else f"the process was not started with LD_PRELOAD={SHIM}")


def check(port: int, address: str | None) -> list[str]:
  """What the server listens on; a ConfigError if it is every interface though
  `address` (not None: not --bind=all) was asked for."""
  found = listening(port)
  if address is not None and exposed(found):
    why = why_exposed()
    raise ConfigError(f"the replay server would listen on every interface (port {port}), not "
                      f"on {address}: {why}; or pass --bind=all to accept that, behind a "
                      "firewall (docs/security.md)")
  return found
