"""Test apps of known footprint, built as `FROM scratch` images on the local engine.

`load` is a small static C program: `load mem=MIB cpu=SECONDS sleep=SECONDS exit=CODE file=PATH`
holds MIB of touched memory, burns SECONDS of CPU time (process CPU clock, not wall), sleeps,
optionally checks a file exists (test data), then exits with CODE. Used by tests and benchmarks.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

LOAD_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    double mem = 0, cpu = 0, slp = 0;
    int code = 0;
    const char *file = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strncmp(argv[i], "mem=", 4)) mem = atof(argv[i] + 4);
        else if (!strncmp(argv[i], "cpu=", 4)) cpu = atof(argv[i] + 4);
        else if (!strncmp(argv[i], "sleep=", 6)) slp = atof(argv[i] + 6);
        else if (!strncmp(argv[i], "exit=", 5)) code = atoi(argv[i] + 5);
        else if (!strncmp(argv[i], "file=", 5)) file = argv[i] + 5;
    }
    size_t bytes = (size_t)(mem * 1024 * 1024);
    char *block = NULL;
    if (bytes) {
        block = malloc(bytes);
        if (!block) { fprintf(stderr, "malloc failed\n"); return 3; }
        for (size_t off = 0; off < bytes; off += 4096) block[off] = (char)(off >> 12);
    }
    volatile unsigned long spin = 0;
    double start = cpu_now();
    while (cpu_now() - start < cpu) for (int j = 0; j < 10000; j++) spin += j;
    if (slp > 0) {
        struct timespec ts = {(time_t)slp, (long)((slp - (time_t)slp) * 1e9)};
        nanosleep(&ts, NULL);
    }
    if (file && access(file, R_OK) != 0) { fprintf(stderr, "missing %s\n", file); return 4; }
    if (block) printf("held %.0f MiB, touched %d\n", mem, block[bytes - 1]);
    printf("done cpu=%.3f\n", cpu_now() - start);
    return code;
}
"""

DOCKERFILE = """FROM scratch
COPY busybox /bin/busybox
COPY load /bin/load
ENTRYPOINT ["/bin/load"]
"""


def compile_load(dest: Path) -> Path:
    """Compile the `load` helper statically into `dest` (needs gcc and a static libc)."""
    src = dest.with_suffix(".c")
    src.write_text(LOAD_C)
    subprocess.run(["gcc", "-static", "-O1", "-o", str(dest), str(src)], check=True)  # noqa: S603, S607 - a fixed argv
    return dest


def build_load_image(client: Any, tag: str, *, busybox: Path = Path("/bin/busybox")) -> str:
    """Build `tag` (scratch + busybox + load) with the classic builder; return the image id."""
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Path(tmp)
        compile_load(ctx / "load")
        shutil.copy(busybox, ctx / "busybox")
        (ctx / "Dockerfile").write_text(DOCKERFILE)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name in ("Dockerfile", "busybox", "load"):
                tar.add(ctx / name, arcname=name)
        buf.seek(0)
        image, _ = client.images.build(fileobj=buf, custom_context=True, tag=tag, rm=True)
        return str(image.id)
