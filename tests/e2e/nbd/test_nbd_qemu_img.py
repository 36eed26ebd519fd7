"""qemu-img convert into an export and qemu-img compare against it."""
from ioc_e2e import MiB, need, random_image, run, sha256

SIZE = 64 * MiB
# zero regions: one block-aligned, one not, and a large one at the end
ZEROS = [(4 * MiB, 2 * MiB), (10 * MiB + 512, 70000), (56 * MiB, 8 * MiB)]


def test_nbd_qemu_img_convert_compare(iocd, tmp_path):
    qemu_img = need("qemu-img")
    src = random_image(tmp_path / "src.raw", SIZE, ZEROS)
    backing = tmp_path / "vol.raw"
    uri = iocd.file_export("vol", backing, size=SIZE)

    run([qemu_img, "convert", "-n", "-p", "-f", "raw", "-O", "raw", src, uri], timeout=120)

    # identical, over TCP and over the unix socket
    p = run([qemu_img, "compare", "-f", "raw", "-F", "raw", src, uri], check=False)
    assert p.returncode == 0, f"qemu-img compare: {p.stdout}{p.stderr}"
    p = run([qemu_img, "compare", "-f", "raw", "-F", "raw", src,
             iocd.uri("vol", unix=True)], check=False)
    assert p.returncode == 0, f"qemu-img compare (unix): {p.stdout}{p.stderr}"

    # what reached the backing file is the image
    assert sha256(backing) == sha256(src)

    # a copy differing in one byte in the middle of data is reported (exit 1)
    other = tmp_path / "other.raw"
    data = bytearray(src.read_bytes())
    data[33 * MiB + 12345] ^= 0x5A
    other.write_bytes(data)
    p = run([qemu_img, "compare", "-f", "raw", "-F", "raw", other, uri], check=False)
    assert p.returncode == 1, f"expected 'Content mismatch' (exit 1): {p.stdout}{p.stderr}"
    assert "mismatch" in p.stdout.lower(), p.stdout

    # and a difference inside a zero region too (zero detection must not hide it)
    data = bytearray(src.read_bytes())
    data[57 * MiB] = 1
    other.write_bytes(data)
    p = run([qemu_img, "compare", "-f", "raw", "-F", "raw", other, uri], check=False)
    assert p.returncode == 1, f"expected mismatch in zero region: {p.stdout}{p.stderr}"


def test_nbd_qemu_img_convert_malloc(iocd, tmp_path):
    """The same into a malloc bdev; qemu-img info sees the export size."""
    qemu_img = need("qemu-img")
    src = random_image(tmp_path / "src.raw", 16 * MiB, [(0, 1 * MiB)])
    uri = iocd.malloc_export("m", size="16MiB")
    run([qemu_img, "convert", "-n", "-f", "raw", "-O", "raw", src, uri])
    p = run([qemu_img, "compare", "-f", "raw", "-F", "raw", src, uri], check=False)
    assert p.returncode == 0, f"{p.stdout}{p.stderr}"
    # qemu-img info sees the right virtual size
    p = run([qemu_img, "info", "--output=json", "-f", "raw", uri])
    import json
    assert json.loads(p.stdout)["virtual-size"] == 16 * MiB
