"""The worker's one-pass decoder (``_codec.TypedDecoder``) against the general path.

For every entry it takes, it must give exactly what ``decode`` + ``convert_args`` give (the
same Job, field for field, though it builds the Job without its ``__init__``); every entry it
does not take as is, it hands back (None) so the general path can say what is wrong.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handlers.launch import LaunchArgs
from streamq import Job, Principal, _codec

text = st.text(max_size=20)
args_strategy = st.builds(
    LaunchArgs,
    provider=st.sampled_from(["aws", "azure", "gcp"]),
    reservation_id=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    pubkey=text,
    amount=st.integers(min_value=0, max_value=1000),
    instance_type=text,
    image_id=text,
    region=text,
)
jobs = st.builds(
    lambda args, account_id, ident, request_id: Job(
        type="launch", args=args, account_id=account_id, identity=ident, request_id=request_id
    ),
    args_strategy,
    st.integers(min_value=0, max_value=2**62),
    st.builds(Principal, account_number=text, org_id=text, type=text, user=text),
    st.none() | text,
)


def general_path(fields: _codec.Fields) -> tuple[Job[LaunchArgs], _codec.Envelope]:
    envelope = _codec.decode(fields)
    args = _codec.convert_args(LaunchArgs, envelope.job.args, job_id="x", job_type="launch")
    return dataclasses.replace(envelope.job, args=args), envelope


@given(jobs, st.uuids())
def test_typed_decoder_gives_what_the_general_path_gives(job: Job[LaunchArgs], uid: object) -> None:
    fields = _codec.encode(job, str(uid), trace={"traceparent": "00-abc"})
    found = _codec.TypedDecoder("launch", LaunchArgs)(fields)
    assert found is not None
    fast_job, fast = found
    slow_job, slow = general_path(fields)
    assert fast_job == slow_job
    assert repr(fast_job) == repr(slow_job)
    assert hash((fast_job.id, fast_job.type)) == hash((slow_job.id, slow_job.type))
    assert (fast.trace, fast.enqueued_at) == (slow.trace, slow.enqueued_at)
    assert isinstance(fast_job.args, LaunchArgs)
    assert fast_job.identity == job.identity
    # Built without Job's __init__, it is still the Job that __init__ would give, and as frozen.
    assert type(fast_job) is Job
    assert fast_job == dataclasses.replace(job, id=str(uid))
    assert hash(fast_job) == hash(dataclasses.replace(job, id=str(uid)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast_job.id = "another"  # type: ignore[misc]


def test_what_the_typed_decoder_does_not_take_goes_to_the_general_path() -> None:
    decoder = _codec.TypedDecoder("launch", LaunchArgs)
    good = _codec.encode(
        Job(type="launch", args=LaunchArgs(provider="aws", reservation_id=1, pubkey="k")), "j1"
    )
    assert decoder(good) is not None
    wrong_int = {**good, b"job": good[b"job"].replace(b'"amount":1', b'"amount":"1"')}
    other_type = {**good, b"job": good[b"job"].replace(b'"type":"launch"', b'"type":"noop"')}
    cases = [
        wrong_int,
        other_type,
        {**good, b"v": b"2"},
        {k: v for k, v in good.items() if k != b"job"},
        {k: v for k, v in good.items() if k != b"id"},
        {**good, b"job": b"{not json"},
        {**good, b"id": b"\xff\xfe"},
    ]
    for fields in cases:
        assert decoder(fields) is None, fields
