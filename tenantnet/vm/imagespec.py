"""What the node VM image is: its contents, its files, and the inputs whose hash names it.

The contents: Debian SUITE (minbase + BASE_INCLUDE) with NODE_PACKAGES, and a virtualenv
(VENV) holding NODE_REQUIREMENTS at the pins of requirements.txt, installed from a wheelhouse
(WHEELHOUSE) made for GUEST_PYTHON. The files of a built image: `Image`. The inputs
(`build_inputs`): the package lists, the suite and the mirror this machine's apt uses
(TENANTNET_DEBIAN_MIRROR overrides it), the wheel pins, and the text of every module that
builds the image (BUILD_MODULES); `inputs_digest` is the name of the image they make.
tenantnet.vm.image builds or finds that image."""

import hashlib
import json
import os
import re
from dataclasses import dataclass

from tenantnet.errors import TenantnetError

SUITE = "bookworm"
BASE_INCLUDE = ("systemd-sysv", "udev", "kmod", "dbus", "ca-certificates")
NODE_PACKAGES = ("linux-image-amd64", "initramfs-tools", "zstd", "openvswitch-switch",
                 "iproute2", "iputils-ping", "openssh-server", "python3", "python3-venv",
                 "iperf3", "procps", "ethtool", "tcpdump",
                 # Vagrant's rsync synced folders (the box): rsync, and `sudo rsync`
                 # on the guest side, which Vagrant runs whatever the SSH user
                 "rsync", "sudo")
# What a node runs of tenantnet: `node bootstrap`, `node addresses`, the lab's endpoints
# (l2probe, prober: standard library only). The CLI parser imports the config model, which
# needs PyYAML and networkx; nothing else of requirements.txt is imported on a node.
NODE_REQUIREMENTS = ("PyYAML", "networkx")
GUEST_PYTHON = "3.11"            # bookworm's python3: the wheels are chosen for it
DISK_SIZE_GB = 4
VENV = "/opt/tenantnet-venv"
WHEELHOUSE = "/opt/tenantnet-wheelhouse"
KEY_NAME = "id_ed25519"
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
REQUIREMENTS = os.path.join(ROOT, "requirements.txt")
# The modules whose text is part of the inputs: a change to how the image is built is a
# new image.
BUILD_MODULES = ("imagespec.py", "chroot.py", "imagebuild.py", "image.py")


class ImageError(TenantnetError):
    """The node image could not be built or packed."""


@dataclass(frozen=True)
class Image:
    """A built image: the directory and the files in it."""
    path: str

    @property
    def digest(self):
        return os.path.basename(self.path)

    @property
    def disk(self):
        return os.path.join(self.path, "base.qcow2")

    @property
    def kernel(self):
        return os.path.join(self.path, "vmlinuz")

    @property
    def initrd(self):
        return os.path.join(self.path, "initrd.img")

    @property
    def ssh_key(self):
        return os.path.join(self.path, KEY_NAME)

    def manifest(self):
        with open(os.path.join(self.path, "manifest.json")) as fh:
            return json.load(fh)


# -- inputs ----------------------------------------------------------------------------
def parse_apt_sources(files):
    """[(type, uri, suite, components)] of the enabled entries of *files*: {path: text},
    one-line (.list) or deb822 (.sources) format."""
    out = []
    for path, text in files.items():
        if path.endswith(".sources"):
            for stanza in re.split(r"\n\s*\n", text):
                fields, key = {}, None
                for line in stanza.splitlines():
                    if not line.strip() or line.lstrip().startswith("#"):
                        continue
                    if line[0] in " \t" and key:
                        fields[key] += " " + line.strip()
                        continue
                    key, _, value = line.partition(":")
                    key = key.strip().lower()
                    fields[key] = value.strip()
                if fields.get("enabled", "yes").lower() == "no":
                    continue
                for typ in fields.get("types", "").split():
                    for uri in fields.get("uris", "").split():
                        for suite in fields.get("suites", "").split():
                            out.append((typ, uri, suite, tuple(fields.get("components",
                                                                          "").split())))
        else:
            for line in text.splitlines():
                line = line.split("#", 1)[0].strip()
                if not line:
                    continue
                words = line.split()
                if len(words) > 1 and words[1].startswith("["):        # [arch=... signed-by=...]
                    while len(words) > 1 and not words[1].endswith("]"):
                        del words[1]
                    del words[1]
                if len(words) >= 3:
                    out.append((words[0], words[1], words[2], tuple(words[3:])))
    return out


def read_apt_sources(root="/etc/apt"):
    files = {}
    main = os.path.join(root, "sources.list")
    candidates = [main] if os.path.isfile(main) else []
    d = os.path.join(root, "sources.list.d")
    if os.path.isdir(d):
        candidates += [os.path.join(d, f) for f in sorted(os.listdir(d))
                       if f.endswith((".list", ".sources"))]
    for path in candidates:
        try:
            with open(path) as fh:
                files[path] = fh.read()
        except OSError:
            continue
    return parse_apt_sources(files)


def image_sources(entries, suite=SUITE):
    """(mirror, [(uri, suite)]) for the image: the first Debian mirror with *suite* main,
    and every entry of *suite*, *suite*-updates and *suite*-security."""
    wanted = (suite, f"{suite}-updates", f"{suite}-security")
    picked = []
    for typ, uri, s, comps in entries:
        if typ == "deb" and s in wanted and "main" in comps \
                and uri.split(":", 1)[0] in ("http", "https", "file") \
                and (uri, s) not in picked:
            picked.append((uri, s))
    override = os.environ.get("TENANTNET_DEBIAN_MIRROR")
    if override:
        return override, [(override, suite)] + [p for p in picked if p[1] != suite]
    mirror = next((uri for uri, s in picked if s == suite), None)
    if not mirror:
        raise ImageError(f"no Debian '{suite} main' entry in /etc/apt/sources.list(.d): "
                         "the image is built from the mirror apt uses here "
                         "(or set TENANTNET_DEBIAN_MIRROR=URL)")
    return mirror, picked


def node_pins(path=REQUIREMENTS, names=NODE_REQUIREMENTS):
    """['PyYAML==6.0.4', ...]: the pins of requirements.txt for *names*."""
    try:
        with open(path) as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise ImageError(f"cannot read {path}: {exc.strerror}") from None
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        m = re.match(r"^([A-Za-z0-9_.\-]+)\s*==\s*(\S+)$", line)
        if m:
            pins[_canon(m.group(1))] = f"{m.group(1)}=={m.group(2)}"
    missing = [n for n in names if _canon(n) not in pins]
    if missing:
        raise ImageError(f"{path}: no '==' pin for {', '.join(missing)} (the node's runtime)")
    return [pins[_canon(n)] for n in names]


def _canon(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def build_code(modules=BUILD_MODULES):
    """sha256 of the text of *modules* (files of this package), in that order."""
    digest = hashlib.sha256()
    for name in modules:
        with open(os.path.join(HERE, name), "rb") as fh:
            digest.update(fh.read())
    return digest.hexdigest()


def build_inputs(sources=None):
    """Everything the image depends on, as a JSON-able dict (its hash names the image)."""
    mirror, entries = image_sources(read_apt_sources() if sources is None else sources)
    return {"suite": SUITE, "mirror": mirror, "apt_sources": [list(e) for e in entries],
            "base_include": list(BASE_INCLUDE), "packages": list(NODE_PACKAGES),
            "wheels": node_pins(), "guest_python": GUEST_PYTHON,
            "disk_size_gb": DISK_SIZE_GB, "build_code": build_code()}


def inputs_digest(inputs):
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]
