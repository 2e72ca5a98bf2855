"""The golden vectors on the wire: the agent answers each request vector with exactly the
reply vector's bytes (after swapping in this test's prefix)."""

import subprocess
import time

import pytest

from conftest import read_vectors

VECTORS = read_vectors()
PAIRS = [name[4:] for name in VECTORS if name.startswith("req_")]


def retarget(topic, prefix):
    return prefix + topic[topic.index("/mqb/"):]


@pytest.mark.parametrize("name", ["eval_expr", "eval_print", "unknown", "put_one", "get_one"])
def test_reply_bytes(board, name):
    if name == "get_one":
        (board.root / "data").mkdir(exist_ok=True)
        (board.root / "data" / "x.bin").write_bytes(b"\x01\x02\x03")
    req, rsp = VECTORS["req_" + name], VECTORS["rsp_" + name]
    sub = subprocess.Popen(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(board.broker.port), "-q", "1", "-C", "1",
         "-W", "10", "-F", "%t %x", "-t", retarget(rsp["topic"], board.prefix)],
        stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)  # let the subscription settle
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(board.broker.port), "-q", "1",
                    "-t", retarget(req["topic"], board.prefix), "-s"],
                   input=req["payload"], check=True)
    out, _ = sub.communicate(timeout=15)
    topic, _, payload = out.strip().partition(" ")
    assert topic == retarget(rsp["topic"], board.prefix)
    assert bytes.fromhex(payload) == rsp["payload"]


def test_every_request_has_a_reply_vector():
    assert set(PAIRS) == {"eval_expr", "eval_print", "unknown", "put_one", "get_one"}
