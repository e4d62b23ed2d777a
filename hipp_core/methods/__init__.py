"""Planning methods: one module each, registered by name (`get`, `names`), all turning (model context, config,
sparsity) into a Blueprint. What the CLI offers, the dashboard lists, jobs accept and benchmarks run comes from here.

Adding a method: a module with a config dataclass (`MethodConfig`, one help string per field) and a function
decorated with `register`, imported below.
"""

from hipp_core.methods import magnitude, owl, policy, random, torch_pruning, uniform, visual  # noqa: F401  (register)
from hipp_core.methods.base import (  # noqa: F401
    KINDS,
    Method,
    MethodConfig,
    ModelContext,
    Option,
    channel_multiple,
    get,
    names,
    register,
)
