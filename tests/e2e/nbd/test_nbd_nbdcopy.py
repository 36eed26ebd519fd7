"""nbdcopy round trips: file -> export -> file, with one and four connections."""
import pytest

from ioc_e2e import MiB, need, random_image, run, sha256

SIZE = 64 * MiB


@pytest.mark.parametrize("connections", [1, 4])
@pytest.mark.parametrize("kind", ["malloc", "file"])
def test_nbd_nbdcopy_round_trip(iocd, tmp_path, kind, connections):
    nbdcopy = need("nbdcopy")
    src = random_image(tmp_path / "src.raw", SIZE, [(8 * MiB, 4 * MiB)])
    if kind == "malloc":
        uri = iocd.malloc_export("v", size=SIZE)
    else:
        uri = iocd.file_export("v", tmp_path / "v.raw", size=SIZE)
    out = tmp_path / "out.raw"
    out.touch()

    run([nbdcopy, "--flush", f"--connections={connections}", "--requests=16",
         src, uri], timeout=120)
    run([nbdcopy, f"--connections={connections}", "--requests=16", uri, out], timeout=120)
    assert out.stat().st_size == SIZE
    assert sha256(out) == sha256(src)
    if kind == "file":
        assert sha256(tmp_path / "v.raw") == sha256(src)


def test_nbd_nbdcopy_unix_socket(iocd, tmp_path):
    nbdcopy = need("nbdcopy")
    src = random_image(tmp_path / "src.raw", 16 * MiB)
    iocd.malloc_export("v", size=16 * MiB)
    uri = iocd.uri("v", unix=True)
    out = tmp_path / "out.raw"
    out.touch()
    run([nbdcopy, "--connections=4", src, uri])
    run([nbdcopy, "--connections=4", uri, out])
    assert sha256(out) == sha256(src)
