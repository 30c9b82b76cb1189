"""No device has a challenge of its own open when a roll-call comes: the scheduler issues
nothing in the quiet window before the roll-call it has drawn. (Otherwise a device busy
with a spot check would be left out of the roll-call, and one GPU behind several devices
could keep that device's unconfirmed uptime: the small excess the economics model
measured before the quiet window.)"""

from __future__ import annotations

from gpunet.core.clock import FrozenClock
from gpunet.server.db.engine import Database
from tests.adversarial.world import CPU_DEV, answer_if_asked, challenges, coordinator, rounds


def test_nothing_is_issued_in_the_quiet_window_before_a_rollcall(
    database: Database, database_url: str, clock: FrozenClock
) -> None:
    with coordinator(database, database_url, clock, spot_check_mean_s=60) as net:
        [dev] = net.enroll(net.register(), **CPU_DEV)
        job = rounds(net, rollcall_gaps=[3600])
        job.run_once()  # draws the roll-call an hour ahead; issues the enrollment proof
        assert answer_if_asked(net, dev)
        assert job.next_rollcall_at is not None
        quiet = job.quiet_s
        assert 0 < quiet < 60
        clock.advance(3600 - quiet / 2)  # due for a spot check, inside the quiet window
        assert job.run_once() == (0, 0, 0)
        clock.advance(quiet)  # the roll-call: the device is free to be called
        assert job.run_once()[2] == 1
        kinds = [r.kind for r in challenges(net, dev)]
    assert kinds == ["enrollment", "rollcall"]
