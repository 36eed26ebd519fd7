"""CHAP (one-way and mutual) and the initiator allow-list: an unlisted
initiator sees no target and cannot log in; 100 logins without CHAP and 100
with a wrong secret against a CHAP-required target all fail."""
import os

from ioc_e2e import need, run
from iscsi_util import INITIATOR

OTHER = "iqn.2024-01.io.ioc.test:stranger"


def test_iscsi_allow_list(iscsi_iocd, tmp_path):
    iqn = iscsi_iocd.file_target("a", tmp_path / "a.img", size="16MiB",
                                 allowed_initiators=[INITIATOR])
    ls = need("iscsi-ls")
    p = run([ls, "-i", INITIATOR, f"iscsi://{iscsi_iocd.portal()}"])
    assert iqn in p.stdout
    p = run([ls, "-i", OTHER, f"iscsi://{iscsi_iocd.portal()}"], check=False)
    assert iqn not in p.stdout
    p = run([need("iscsi-inq"), "-i", OTHER, iscsi_iocd.url(iqn)], check=False)
    assert p.returncode != 0
    p = run([need("iscsi-inq"), "-i", INITIATOR, iscsi_iocd.url(iqn)])
    assert "Vendor:IOC" in p.stdout


def test_iscsi_chap_one_way_and_wrong(iscsi_iocd, tmp_path):
    iqn = iscsi_iocd.file_target("c", tmp_path / "c.img", size="16MiB",
                                 chap={"user": "alice", "secret": "s3cret-s3cret"})
    inq = need("iscsi-inq")
    p = run([inq, iscsi_iocd.url(iqn, user="alice", secret="s3cret-s3cret")])
    assert "Vendor:IOC" in p.stdout
    ok = 0
    for i in range(100):
        p = run([inq, iscsi_iocd.url(iqn)], check=False, timeout=30)
        ok += p.returncode == 0
        p = run([inq, iscsi_iocd.url(iqn, user="alice", secret=f"wrong-{i}")], check=False,
                timeout=30)
        ok += p.returncode == 0
    assert ok == 0, f"{ok} of 200 bad logins succeeded"
    # the daemon still serves the right credentials afterwards
    run([inq, iscsi_iocd.url(iqn, user="alice", secret="s3cret-s3cret")])


def test_iscsi_chap_mutual(iscsi_iocd, tmp_path):
    iqn = iscsi_iocd.file_target("m", tmp_path / "m.img", size="16MiB",
                                 chap={"user": "bob", "secret": "initiator-secret",
                                       "mutual_user": "tgt", "mutual_secret": "target-secret"})
    inq = need("iscsi-inq")
    env = dict(os.environ, LIBISCSI_CHAP_TARGET_USERNAME="tgt",
               LIBISCSI_CHAP_TARGET_PASSWORD="target-secret")
    p = run([inq, iscsi_iocd.url(iqn, user="bob", secret="initiator-secret")], env=env)
    assert "Vendor:IOC" in p.stdout
    # the initiator refuses a target that proves the wrong secret
    bad = dict(env, LIBISCSI_CHAP_TARGET_PASSWORD="not-the-target")
    p = run([inq, iscsi_iocd.url(iqn, user="bob", secret="initiator-secret")], env=bad,
            check=False)
    assert p.returncode != 0
