import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402

# Differential tests compare against JAX's autodiff in float64.
jax.config.update("jax_enable_x64", True)
