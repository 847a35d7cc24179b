"""Fetch llama.cpp's GGUF converter into ``<venv>/share/llama.cpp`` (run by ``make setup``).

notebooks/ship.ipynb writes the fine-tuned model as a GGUF file with llama.cpp's own
``convert_hf_to_gguf.py``, which needs its ``gguf-py`` and ``conversion`` packages from the
same llama.cpp version. They ship inside the llama-cpp-python source distribution: pip
downloads it from the package index (its build isolation fetches scikit-build-core to read
the metadata; nothing is compiled), and only those Python files and llama.cpp's licence
are extracted. The build then uses them offline (``ftlab.ship.llama_cpp_converter``).
Read the Docs runs this script too (``.readthedocs.yaml``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VERSION = "0.3.36"  # llama-cpp-python, pinned like every dependency
WANTED = ("convert_hf_to_gguf.py", "gguf-py/", "conversion/", "LICENSE")


def main() -> None:
    target = Path(sys.prefix) / "share" / "llama.cpp"
    with tempfile.TemporaryDirectory() as tmp:
        run = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
                              "--no-binary", ":all:", "--no-deps", f"llama-cpp-python=={VERSION}", "-d", tmp],
                             stderr=subprocess.PIPE, text=True)
        status = run.returncode
        sys.stderr.write("".join(line for line in run.stderr.splitlines(True) if "is ignored: it is neither" not in line))
        archives = list(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if status or not archives:
            raise SystemExit(f"error: downloading llama-cpp-python=={VERSION} (source) failed (see above): "
                             "check the network or proxy to the package index, then run make again")
        prefix = f"llama_cpp_python-{VERSION}/vendor/llama.cpp/"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        with tarfile.open(archives[0]) as tar:
            for member in tar.getmembers():
                name = member.name.removeprefix(prefix)
                if member.name.startswith(prefix) and name.startswith(WANTED) and (member.isfile() or member.isdir()):
                    member.name = name
                    tar.extract(member, target, filter="data")
    if not (target / "convert_hf_to_gguf.py").exists():
        raise SystemExit(f"error: convert_hf_to_gguf.py is not in llama-cpp-python=={VERSION}'s source")
    print(f"llama.cpp's GGUF converter (llama-cpp-python {VERSION}) is in {target}")


if __name__ == "__main__":
    main()
