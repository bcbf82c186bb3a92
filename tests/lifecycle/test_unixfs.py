"""UnixFS DAGs as kubo builds them: the CIDs of a directory upload, checked against kubo's
published vectors and against a second kubo-compatible implementation."""

from __future__ import annotations

import os
import random

import pytest
from aleph_cid import CidHasher

from glisk.devtools.standins.pinata import reference_directory_cid
from lifecycle.providers.ipfs import File, directory_cids
from lifecycle.providers.unixfs import CHUNK, directory, file_dag


@pytest.mark.parametrize(
    ("data", "version", "cid"),
    [
        (b"", 0, "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"),
        (b"hello world", 0, "Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD"),
        (b"hello world\n", 0, "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"),
        (b"hello world", 1, "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"),
    ],
)
def test_files_match_kubos_published_vectors(data, version, cid):
    assert file_dag(data, version=version).text == cid


def test_a_file_of_two_levels_matches_kubos_published_vector():
    """45,900,000 zero bytes: 176 chunks, more than one node's 174 links."""
    assert file_dag(bytes(45_900_000), version=0).text == "QmRdPboiJQoZ5cdazR9a8vGqdJvWg6M5bfdtUSKNHpuscj"


def test_directories_match_kubos_published_vectors():
    assert directory({}, version=0).text == "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
    # `ipfs add -w hello.txt` of "hello world": the file's link is 19 bytes (its one block).
    wrapped = directory({"hello.txt": file_dag(b"hello world", version=0)}, version=0)
    assert wrapped.text == "QmNxvA5bwvPGgMXbmtyhxA1cKFdvQXnsGnZLCGor3AzYxJ"


@pytest.mark.parametrize("size", [1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK + 17, 174 * CHUNK + 1])
@pytest.mark.parametrize("version", [0, 1])
def test_files_of_every_shape_match_the_kubo_compatible_library(size, version):
    data = random.Random(size).randbytes(size)
    hasher = CidHasher.for_ipfs() if version == 0 else CidHasher.for_ipfs_v1_raw_leaves()
    hasher.update(data)
    assert file_dag(data, version=version).text == hasher.finalize()


@pytest.mark.parametrize("version", [0, 1])
def test_a_batch_directory_matches_the_kubo_compatible_library(version):
    """What the IPFS stage uploads: images (one over a chunk) and metadata, names sorted by
    bytes as kubo sorts them (`glisk-s0-10.png` before `glisk-s0-9.png`)."""
    files = [File(f"glisk-s0-{n}.png", os.urandom(n * 30_000), "image/png") for n in range(1, 12)]
    files.append(File("glisk-s0-9.json", b'{"name":"GLISK S0 #9"}', "application/json"))
    root, cids = directory_cids(files, cid_version=version)
    assert root == reference_directory_cid({f.name: f.data for f in files}, version)
    for f in files:  # each file keeps the CID it has alone
        assert cids[f.name] == file_dag(f.data, version=version).text
    assert root.startswith("Qm" if version == 0 else "bafybei")


def test_a_directory_cannot_hold_two_files_of_one_name():
    with pytest.raises(ValueError, match="two files of one name"):
        directory_cids([File("a.png", b"1", "image/png"), File("a.png", b"2", "image/png")], cid_version=1)
