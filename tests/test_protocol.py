"""Worker protocol frames: round trips, refusals with short reasons, signed challenges."""

import pytest
from solders.keypair import Keypair

from nexus_app.chain.wallet import sign, verify
from nexus_app.protocol import (
    PROTOCOL_VERSION,
    Chunk,
    Done,
    Hello,
    Job,
    ModelCard,
    ProtocolError,
    Usage,
    encode,
    parse_gateway_frame,
    parse_worker_frame,
    worker_auth_message,
)


def test_frames_round_trip() -> None:
    usage = Usage(prompt_tokens=3, completion_tokens=4)
    done = Done(job_id="j", finish_reason="length", usage=usage)
    assert parse_worker_frame(encode(done)) == done
    chunk = Chunk(job_id="j", text="héllo ✓")
    assert parse_worker_frame(encode(chunk)) == chunk
    job = Job(job_id="j", kind="chat", model="m", request={"messages": []}, deadline=1.5)
    assert parse_gateway_frame(encode(job)) == job


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"type": "nope"}',
        '{"type": "chunk"}',
        '{"type": "done", "job_id": "j", "usage": {"completion_tokens": -1}}',
        '{"type": "job", "job_id": "j"}',  # a gateway frame sent by a worker
    ],
)
def test_invalid_worker_frames_are_refused(text: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_worker_frame(text)
    assert len(str(info.value)) <= 120


def test_hello_signature_proves_the_wallet() -> None:
    keypair, other = Keypair(), Keypair()
    message = worker_auth_message("nonce-1")
    signature = sign(keypair, message)
    hello = Hello(protocol=PROTOCOL_VERSION, wallet=str(keypair.pubkey()), signature=signature,
                  models=[ModelCard(id="m")])
    assert verify(hello.wallet, message, hello.signature)
    assert not verify(hello.wallet, worker_auth_message("nonce-2"), signature)
    assert not verify(str(other.pubkey()), message, signature)
    assert not verify("not-a-key", message, signature)


def test_worker_url_follows_the_gateway_scheme() -> None:
    from nexus_app.protocol import worker_url

    assert worker_url("http://127.0.0.1:8080/") == "ws://127.0.0.1:8080/v1/workers/connect"
    assert worker_url("https://gw.example") == "wss://gw.example/v1/workers/connect"
