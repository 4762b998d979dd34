"""The image's ``serve`` and ``train`` executables (deploy/bin/*): ``python -m batchlane.container.entrypoint``.

SageMaker starts a container as root (``docker run IMAGE serve`` or ``IMAGE train``). ``serve`` only reads the model
and writes under ``BATCHLANE_HOME``, so it drops root for the image's ``batchlane`` user when the model is readable
to that user; ``train`` keeps the user it was started as, because SageMaker's ``/opt/ml`` mounts belong to root.
Both replace this process (``exec``), so the server or trainer is the container's PID 1 and receives SIGTERM itself.
"""

from __future__ import annotations

import logging
import os
import pwd
import stat
import sys
from collections.abc import Mapping
from pathlib import Path

logger = logging.getLogger("batchlane.container")

IMAGE_USER = "batchlane"
USAGE = "usage: serve [batchlane serve options] | train"


def readable_by(path: Path, uid: int, gid: int) -> bool:
    """Whether every file and folder under ``path`` can be read (and folders entered) by ``uid``/``gid``."""
    paths = [path, *path.rglob("*")] if path.is_dir() else [path]
    for item in paths:
        try:
            info = item.stat()
        except OSError:
            continue  # a dangling link: the server reports it when it loads the model
        need_exec = stat.S_ISDIR(info.st_mode)
        if info.st_uid == uid:
            ok = info.st_mode & stat.S_IRUSR and (not need_exec or info.st_mode & stat.S_IXUSR)
        elif info.st_gid == gid:
            ok = info.st_mode & stat.S_IRGRP and (not need_exec or info.st_mode & stat.S_IXGRP)
        else:
            ok = info.st_mode & stat.S_IROTH and (not need_exec or info.st_mode & stat.S_IXOTH)
        if not ok:
            return False
    return True


def drop_privileges(model_dir: Path, env: Mapping[str, str]) -> str | None:
    """As root, switch to the image's user when it can read ``model_dir``; return why not, or None once switched."""
    if os.getuid() != 0:
        return None
    try:
        user = pwd.getpwnam(IMAGE_USER)
    except KeyError:
        return f"no user {IMAGE_USER!r} in this image"
    if model_dir.exists() and not readable_by(model_dir, user.pw_uid, user.pw_gid):
        return f"{model_dir} is not readable by the user {IMAGE_USER!r}"
    os.setgroups([])
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)
    os.environ["HOME"] = user.pw_dir
    os.environ["USER"] = os.environ["LOGNAME"] = IMAGE_USER
    return None


def serve(args: list[str], env: Mapping[str, str] | None = None) -> None:
    """Replace this process with ``batchlane serve`` (flags pass through; SAGEMAKER_* and SM_* are read there)."""
    from batchlane.errors import BatchlaneError
    from batchlane.settings import ServeSettings

    env = os.environ if env is None else env
    try:
        model_dir = ServeSettings.from_env(env).model_dir
    except BatchlaneError:  # a bad variable: `batchlane serve` reports it in its own words below
        model_dir = Path(env.get("SM_MODEL_DIR") or "/opt/ml/model")
    reason = drop_privileges(model_dir, env)
    if reason:
        logger.warning("serving as root: %s", reason)
    workers = env.get("SAGEMAKER_MODEL_SERVER_WORKERS", "").strip()
    if workers:
        logger.info(
            "SAGEMAKER_MODEL_SERVER_WORKERS=%s: one process serves; SAGEMAKER_MAX_CONCURRENT_TRANSFORMS sets how many "
            "invocations run at once",
            workers,
        )
    os.execvp(sys.executable, [sys.executable, "-m", "batchlane", "serve", *args])


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not argv or argv[0] not in ("serve", "train"):
        sys.exit(USAGE)
    if argv[0] == "serve":
        serve(argv[1:])
    else:
        from batchlane.container.training_job import run

        sys.exit(run())


if __name__ == "__main__":
    main()
