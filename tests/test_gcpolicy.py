"""The controller's garbage-collector policy (controller.gcpolicy) on this interpreter."""

import gc

from tenantnet.controller import gcpolicy


def test_no_collection_during_start_up_then_frozen_and_less_often_until_stopped():
    before = gc.get_threshold()
    assert gc.isenabled()
    made = [[i] for i in range(1000)]          # containers alive through the start-up
    gcpolicy.starting()
    try:
        assert not gc.isenabled()
        count = gc.get_count()[0]
        garbage = [[] for _ in range(5000)]    # would have triggered a young collection
        assert gc.get_count()[0] >= count + 5000
        del garbage
    finally:
        gcpolicy.started()
    try:
        assert gc.isenabled()
        assert gc.get_freeze_count() >= len(made)
        assert gc.get_threshold() == (gcpolicy.YOUNG_THRESHOLD, *before[1:])
    finally:
        gcpolicy.stopped()
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before


def test_stopped_before_it_started_leaves_the_collector_on():
    gcpolicy.starting()
    gcpolicy.stopped()
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_a_collector_that_was_off_stays_off():
    gc.disable()
    try:
        gcpolicy.starting()
        gcpolicy.started()
        assert not gc.isenabled()
    finally:
        gcpolicy.stopped()
        gc.enable()
    assert gc.get_freeze_count() == 0
