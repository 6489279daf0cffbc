"""`tenantnet lab image build [--force]` and `tenantnet lab image box [--out FILE]`: the node
VM image (tenantnet.vm.image)."""

from tenantnet.cli.common import progress


def cmd_image_build(args):
    from tenantnet.vm.image import build_image
    image = build_image(force=args.force, progress=progress)
    m = image.manifest()
    times = m.get("times", {})
    print(f"image {image.digest}: {image.path}")
    print(f"  kernel {m.get('kernel_release')}, qcow2 {m.get('qcow2_mb')} MB "
          f"(virtual {m.get('virtual_size_gb')} GB), built {m.get('built')}"
          + (f" in {times['total_s']:.0f}s" if "total_s" in times else ""))
    print(f"  ssh: root@VM with {image.ssh_key}")
    return 0


def cmd_image_box(args):
    from tenantnet.vm.box import build_box
    from tenantnet.vm.image import build_image
    image = build_image(progress=progress)
    print(build_box(image, out=args.out, progress=progress))
    return 0


def add_image_commands(lab_subparsers):
    """`image build|box` under the `lab` subcommands."""
    image = lab_subparsers.add_parser("image", help="the node VM image (Debian, kernel OVS)")
    sub = image.add_subparsers(dest="image_cmd", required=True)
    c = sub.add_parser("build", help="build the node image, or reuse the cached one")
    c.add_argument("--force", action="store_true", help="rebuild even when cached")
    c.set_defaults(func=cmd_image_build)
    c = sub.add_parser("box", help="pack the node image as a libvirt Vagrant box")
    c.add_argument("--out", help="the box file (default: in the image's cache directory)")
    c.set_defaults(func=cmd_image_box)
