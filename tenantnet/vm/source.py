"""tenantnet's own source in a running node VM.

The image holds only tenantnet's runtime (/opt/tenantnet-venv); the source changes with every
commit, so it is pushed over SSH instead: a tar of the packages and of vagrant/ (the Vagrant
lab's provisioning scripts, units and udev rule, with which the node is then prepared) goes
to /opt/tenantnet-src (replaced whole), a .pth file makes it importable in the venv, and
/opt/tenantnet-venv/bin/tenantnet is a console wrapper. A push of an unchanged tree only
compares a digest. Hidden entries (vagrant/.cluster, vagrant/.vagrant) are never pushed."""

import hashlib
import io
import os
import tarfile

from tenantnet.vm.imagespec import VENV

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGES = ("tenantnet", "ryu_apps", "vagrant")
DEST = "/opt/tenantnet-src"
WRAPPER = f"""#!{VENV}/bin/python
import sys
from tenantnet.cli.main import main
sys.exit(main())
"""


def _skip(name):
    return name == "__pycache__" or name.endswith((".pyc", ".pyo")) or name.startswith(".")


def source_tar(root=ROOT, packages=PACKAGES):
    """(bytes of a gzip tar of *packages* under *root*, its digest). Deterministic: sorted
    names, no times or owners, so an unchanged tree has an unchanged digest."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        for pkg in packages:
            top = os.path.join(root, pkg)
            if not os.path.isdir(top):
                continue
            for dirpath, dirs, files in os.walk(top):
                dirs[:] = sorted(d for d in dirs if not _skip(d))
                for f in sorted(files):
                    if _skip(f):
                        continue
                    path = os.path.join(dirpath, f)
                    info = tarfile.TarInfo(os.path.relpath(path, root))
                    with open(path, "rb") as fh:
                        data = fh.read()
                    info.size, info.mode, info.mtime = len(data), 0o644, 0
                    tar.addfile(info, io.BytesIO(data))
    data = buf.getvalue()
    # the digest of the content, not of the gzip stream (whose header has a time)
    digest = hashlib.sha256()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for m in tar.getmembers():
            digest.update(m.name.encode() + b"\0" + tar.extractfile(m).read())
    return data, digest.hexdigest()[:16]


def install_script(digest):
    """The remote shell script: the tar on stdin replaces DEST; .pth and wrapper."""
    return f"""set -e
if [ "$(cat {DEST}/.digest 2>/dev/null)" = "{digest}" ]; then cat >/dev/null; echo unchanged; exit 0; fi
rm -rf {DEST}.new && mkdir -p {DEST}.new
tar -xzf - -C {DEST}.new
echo {digest} > {DEST}.new/.digest
rm -rf {DEST}.old; [ ! -e {DEST} ] || mv {DEST} {DEST}.old
mv {DEST}.new {DEST} && rm -rf {DEST}.old
site=$({VENV}/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo {DEST} > "$site/tenantnet-src.pth"
cat > {VENV}/bin/tenantnet <<'EOF'
{WRAPPER}EOF
chmod 755 {VENV}/bin/tenantnet
echo installed
"""


def push_source(vm, root=ROOT):
    """Install the current source tree into *vm* (a QemuVm, or anything with
    ssh(cmd, input=bytes, check=True)); 'installed' or 'unchanged'."""
    return push_tar(vm, *source_tar(root))


def push_tar(vm, data, digest):
    """Install the tar *data* (from source_tar) of digest *digest* into *vm*."""
    res = vm.ssh(install_script(digest), input=data, check=True, text=False)
    return res.stdout.decode(errors="replace").strip().splitlines()[-1]
