"""Counts TrainConfig constructions, for tests/test_trial_config.py: with $COUNT_CONFIGS set, a
process that imports textvae_core.config appends the pid and JSON of every TrainConfig it builds
(dataclass __init__; dataclasses.replace too) to that file. On PYTHONPATH only in the shared
smoke study's run (conftest.finished_smoke_study), so it loads into its driver and Ray's workers.
"""

import os
import sys
import json

if os.environ.get("COUNT_CONFIGS"):
    import importlib.abc
    import importlib.machinery

    class _Hook(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "textvae_core.config":
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                cls = module.TrainConfig
                init = cls.__init__

                def counted(self, *a, **k):
                    init(self, *a, **k)
                    with open(os.environ["COUNT_CONFIGS"], "a") as f:
                        f.write(json.dumps([os.getpid(), self.to_dict()]) + "\n")

                cls.__init__ = counted

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _Hook())
