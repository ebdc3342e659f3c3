"""JAX's persistent compilation cache, on by default for `netspec train`, and compile timing.

A second run of the same spec on the same machine loads its executables from the cache instead of
compiling them again. The cache is keyed by JAX on the program, the backend and the compiler
flags, so a changed spec or another JAX version simply misses.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator


def enable(path: Path) -> str | None:
    """Point JAX at `path` and cache every executable (JAX's default skips compiles under 1 s).

    Returns why the cache could not be used (the run then compiles as usual), or None."""
    import jax

    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return f"compilation cache disabled: cannot create {path}: {e.strerror or e}"
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    _forget_cache_decision()
    return None


def disable() -> None:
    """Turn the persistent cache off, also after an earlier run in this process turned it on."""
    import jax

    jax.config.update("jax_enable_compilation_cache", False)
    _forget_cache_decision()


def _forget_cache_decision() -> None:
    # JAX decides once per process whether the cache is in use; a library caller (or the test
    # suite) that runs several trainings in one process needs each run's setting to take effect.
    try:
        from jax._src import compilation_cache
    except ImportError:
        return
    compilation_cache.reset_cache()


def enable_default(path: Path | None) -> str | None:
    """`enable` for a command's --compile-cache value (None: the default folder; "off": no cache)."""
    from netspec.train.config import cache_disabled, default_cache_dir

    path = default_cache_dir() if path is None else path
    if cache_disabled(path):
        disable()
        return None
    return enable(path)


@dataclass
class CompileStats:
    """Seconds spent lowering + compiling, and how the persistent cache answered."""

    seconds: float = 0.0
    hits: int = 0
    misses: int = 0
    programs: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if self.hits and not self.misses:
            how = "from the compilation cache"
        elif self.hits:
            how = f"{self.hits} of {self.hits + self.misses} from the compilation cache"
        elif self.misses:
            how = "cache miss"
        else:
            how = "no persistent cache"
        return f"{self.seconds:.1f} s ({how})"


@contextmanager
def counting(stats: CompileStats) -> Iterator[None]:
    """Count persistent-cache hits and misses while the block compiles."""
    import jax.monitoring as monitoring

    def listener(name: str, **kwargs: Any) -> None:
        if name == "/jax/compilation_cache/cache_hits":
            stats.hits += 1
        elif name == "/jax/compilation_cache/cache_misses":
            stats.misses += 1

    monitoring.register_event_listener(listener)
    try:
        yield
    finally:
        monitoring.unregister_event_listener(listener)


def compile_ahead(stats: CompileStats, name: str, fn: Callable[..., Any], *args: Any) -> Any:
    """`fn.lower(*args).compile()` (fn is a jax.jit), timed into `stats`."""
    start = time.perf_counter()
    with counting(stats):
        compiled = fn.lower(*args).compile()
    stats.seconds += time.perf_counter() - start
    stats.programs.append(name)
    return compiled
