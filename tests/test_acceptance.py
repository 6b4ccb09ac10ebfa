"""Whether a message is taken is decided once, when the caller asks: what the helpers return
and what the counters say agree, also across a lost connection (real broker)."""

from __future__ import annotations

import threading
import time

import pytest
from support.corekit import settings_for, unique_base, wait_state


@pytest.mark.timeout(60)
def test_answers_and_counters_agree_while_the_connection_goes(core_factory, broker):
    base = unique_base()
    core = core_factory(settings_for(broker, base))
    wait_state(core, "connected")
    answers = {True: 0, False: 0}
    stop = threading.Event()

    def publisher():
        i = 0
        while not stop.is_set():
            answers[core.publish(f"{base}a", str(i), False, 0, False)] += 1
            i += 1
            if i % 200 == 0:
                time.sleep(0.0005)

    t = threading.Thread(target=publisher)
    t.start()
    time.sleep(0.5)
    broker.stop()
    wait_state(core, "backing_off", timeout=10)
    time.sleep(0.3)
    stop.set()
    t.join(10)
    time.sleep(0.3)
    status = core.status()
    assert answers[False] > 0 and answers[True] > 0, answers
    # Every False was counted as refused, and nothing the caller was told True was.
    assert status["refused"] == answers[False], (answers, status)
    assert status["published"] + status["queue_depth"] + status["dropped"] >= answers[True], (
        answers,
        status,
    )
