"""The doorbell that hands a step's events from the engine thread to the event loop: order,
many threads' worth of rings, a loop that closed, and its pipe closed with the loop."""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import threading

import pytest

from nexus_app.worker.events import Doorbell, Finished, Outbox, Stream, Text


async def test_a_steps_events_rung_from_the_engine_thread_arrive_in_order() -> None:
    loop = asyncio.get_running_loop()
    streams = [Stream(loop) for _ in range(4)]
    outbox = Outbox()

    def engine() -> None:  # 500 steps, each with one token of every stream
        for step in range(500):
            for number, stream in enumerate(streams):
                outbox.put(stream, Text(f"{number}:{step} "))
            outbox.flush()
        for stream in streams:
            outbox.put(stream, Finished("length", 1, 500))
        outbox.flush()

    thread = threading.Thread(target=engine)
    thread.start()
    texts = []
    for stream in streams:
        texts.append("".join([event.text async for event in stream
                              if isinstance(event, Text)]))
    thread.join()
    for number, text in enumerate(texts):
        assert text == "".join(f"{number}:{step} " for step in range(500))


@pytest.mark.skipif(sys.platform == "win32", reason="the pipe doorbell is for POSIX")
async def test_on_posix_the_loop_is_woken_through_its_pipe() -> None:
    doorbell = Doorbell.of(asyncio.get_running_loop())
    assert doorbell is Doorbell.of(asyncio.get_running_loop())  # one per loop
    assert doorbell._pipe is not None


@pytest.mark.skipif(sys.platform == "win32", reason="the pipe doorbell is for POSIX")
def test_a_closed_loop_gets_nothing_and_its_pipe_is_closed_with_it() -> None:
    loop = asyncio.new_event_loop()

    async def make() -> Stream:
        return Stream(asyncio.get_running_loop())

    stream = loop.run_until_complete(make())
    doorbell = stream._doorbell
    assert doorbell._pipe is not None
    read_end = doorbell._pipe[0]
    loop.close()
    doorbell.ring([(stream, Text("late"))])  # the engine of a loop that is gone: no error
    assert not doorbell._pending
    del loop, stream, doorbell
    gc.collect()
    with pytest.raises(OSError):
        os.fstat(read_end)
