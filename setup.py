"""Metadata lives in setup.cfg; this file adds the one compiled part.

`trainer/replay/bindhost.c` is a small LD_PRELOAD library that makes the replay
server listen on one address (Reverb 0.14 always listens on every interface);
see trainer/replay/bind.py.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("trainer.replay._bindhost", ["trainer/replay/bindhost.c"],
                             libraries=["dl"])])
