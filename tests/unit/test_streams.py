"""Stream and subject names, case references and the durability profile (DESIGN §2)."""

from __future__ import annotations

import pytest
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from shared.streams import (
    CONTEXT_STREAMS, DUPLICATE_WINDOW_S, CaseRef, Topology, _differences, default_monitor_url,
    stream_profile,
)

CLIENT = "0193a7c2-5e1f-7b3a-9c1d-2f4e6a8b0c1d"
REF = CaseRef("jaksel", CLIENT)


# ------------------------------------------------------------------------------ names

def test_names_without_a_namespace():
    t = Topology()
    assert t.root == "bapas"
    assert t.stream("guidance") == "GUIDANCE"
    assert t.subject("guidance", REF) == f"bapas.jaksel.guidance.{CLIENT}"
    assert t.context_filter("guidance") == "bapas.*.guidance.*"
    assert t.context_filter("guidance", "jaksel") == "bapas.jaksel.guidance.*"
    assert t.schema("guidance") == "guidance"
    assert t.durable("balances", "bapas.guidance") == "balances_bapas_guidance"


def test_names_with_a_namespace():
    t = Topology("t1a2")
    assert t.root == "t1a2.bapas"
    assert t.stream("guidance") == "T1A2_GUIDANCE"
    assert t.subject("guidance", REF) == f"t1a2.bapas.jaksel.guidance.{CLIENT}"
    assert t.context_filter("supervision") == "t1a2.bapas.*.supervision.*"
    assert t.schema("guidance") == "t1a2_guidance"
    assert t.durable("balances") == "t1a2_balances"


@pytest.mark.parametrize("namespace", ["", "t1a2"])
def test_parse_subject_reads_back_office_context_and_client(namespace):
    t = Topology(namespace)
    for context in CONTEXT_STREAMS:
        assert t.parse_subject(t.subject(context, REF)) == ("jaksel", context, CLIENT)


def test_two_namespaces_never_share_a_stream_subject_or_schema():
    a, b = Topology(), Topology("side")
    assert a.stream("guidance") != b.stream("guidance")
    assert a.schema("guidance") != b.schema("guidance")
    # the filter of one install does not match the subjects of the other
    assert not b.subject("guidance", REF).startswith("bapas.")


def test_parse_subject_refuses_a_subject_of_another_namespace():
    with pytest.raises(ValueError):
        Topology("t1").parse_subject("bapas.jaksel.guidance.c1")


@pytest.mark.parametrize("namespace", ["T1", "1t", "t.1", "t-1", "t 1", "t*", "a" * 32])
def test_a_namespace_must_be_a_plain_lower_case_name(namespace):
    with pytest.raises(ValueError, match="namespace"):
        Topology(namespace)


# ------------------------------------------------------------------------------ case refs

def test_a_case_ref_takes_office_codes_and_uuids():
    assert CaseRef("jaksel", CLIENT).client_id == CLIENT
    assert CaseRef("bapas-kelas-1_medan", "c1").office == "bapas-kelas-1_medan"


@pytest.mark.parametrize("token", [
    "", "a.b", "a*", "*", ">", "a>", "a b", " a", "a\tb", "Jaksel", "-a", "_a", "a/b", "a" * 64,
])
def test_a_case_ref_refuses_what_cannot_be_one_subject_token(token):
    with pytest.raises(ValueError, match="client_id .* not a valid subject token"):
        CaseRef("jaksel", token)
    with pytest.raises(ValueError, match="office .* not a valid subject token"):
        CaseRef(token, CLIENT)


def test_a_case_ref_refuses_a_trailing_newline():
    with pytest.raises(ValueError):
        CaseRef("jaksel", "c1\n")


def test_a_case_ref_is_a_value():
    assert CaseRef("jaksel", "c1") == CaseRef("jaksel", "c1")
    assert len({CaseRef("jaksel", "c1"), CaseRef("jaksel", "c1")}) == 1


# ------------------------------------------------------------------------------ profile

@pytest.mark.parametrize("replicas", [1, 3])
def test_the_stream_profile_holds_the_durability_settings(replicas):
    cfg = stream_profile(Topology(), "guidance", replicas)
    assert cfg.name == "GUIDANCE" and cfg.subjects == ["bapas.*.guidance.*"]
    assert cfg.storage == StorageType.FILE
    assert cfg.retention == RetentionPolicy.LIMITS
    assert cfg.discard == DiscardPolicy.OLD
    assert (cfg.max_msgs, cfg.max_bytes, cfg.max_msgs_per_subject) == (-1, -1, -1)
    assert not cfg.max_age  # no age limit: events are kept forever
    assert cfg.deny_delete is True and cfg.deny_purge is True
    assert cfg.allow_direct is True and cfg.allow_atomic is True
    assert cfg.duplicate_window >= 600
    assert cfg.num_replicas == replicas


def test_the_profile_goes_to_the_server_in_its_units():
    wire = stream_profile(Topology("t1"), "registration").as_dict()
    assert wire["name"] == "T1_REGISTRATION"
    assert wire["subjects"] == ["t1.bapas.*.registration.*"]
    assert wire["duplicate_window"] >= 600 * 10**9  # nanoseconds on the wire
    assert wire["max_age"] == 0
    assert DUPLICATE_WINDOW_S >= 600


def test_a_stream_as_the_server_reports_it_holds_the_profile():
    wanted = stream_profile(Topology(), "supervision")
    reported = StreamConfig.from_response(wanted.as_dict())
    assert _differences(reported, wanted) == []


@pytest.mark.parametrize("change, named", [
    ({"storage": "memory"}, "storage"),
    ({"retention": "workqueue"}, "retention"),
    ({"max_age": 30 * 24 * 3600 * 10**9}, "max_age"),
    ({"max_msgs_per_subject": 100}, "max_msgs_per_subject"),
    ({"deny_delete": False}, "deny_delete"),
    ({"deny_purge": False}, "deny_purge"),
    ({"allow_direct": False}, "allow_direct"),
    ({"allow_atomic": False}, "allow_atomic"),
    ({"duplicate_window": 120 * 10**9}, "duplicate_window"),
    ({"subjects": ["bapas.>"]}, "subjects"),
])
def test_each_difference_from_the_profile_is_named(change, named):
    wanted = stream_profile(Topology(), "supervision")
    reported = StreamConfig.from_response({**wanted.as_dict(), **change})
    problems = _differences(reported, wanted)
    assert len(problems) == 1 and problems[0].startswith(named), problems


def test_fewer_replicas_than_the_profile_asks_for_are_refused_more_are_not():
    wanted = stream_profile(Topology(), "supervision", replicas=3)
    fewer = StreamConfig.from_response({**wanted.as_dict(), "num_replicas": 1})
    more = StreamConfig.from_response({**wanted.as_dict(), "num_replicas": 5})
    assert _differences(fewer, wanted) == [
        "num_replicas is 1, must be at least 3 (BAPAS_STREAM_REPLICAS)"]
    assert _differences(more, wanted) == []


def test_the_default_monitor_urls_name_every_host_of_a_cluster():
    assert default_monitor_url("nats://n1:4222,nats://n2:4222,nats://n3:4222") == (
        "http://n1:8222,http://n2:8222,http://n3:8222")
    assert default_monitor_url("nats://10.0.0.5:4222") == "http://10.0.0.5:8222"


def test_an_office_leaf_holds_its_own_subjects_and_writes_only_its_own_cases():
    leaf = Topology(office="jaksel")
    profile = stream_profile(leaf, "registration")
    assert profile.subjects == ["bapas.jaksel.registration.*"] and profile.sources is None
    assert leaf.writes("jaksel") and not leaf.writes("bandung")
    assert leaf.written_offices_sql(2) == ("office = $2", "jaksel")


def test_a_hub_sources_each_office_leaf_and_writes_every_other_office():
    hub = Topology("t1", leaves=("jaksel", "bandung"))
    profile = stream_profile(hub, "guidance")
    assert profile.subjects == ["t1.bapas.*.guidance.*"]
    assert [(s.name, s.external.api) for s in profile.sources] == [
        ("T1_GUIDANCE", "$JS.jaksel.API"), ("T1_GUIDANCE", "$JS.bandung.API")]
    assert hub.writes("jaktim") and not hub.writes("jaksel")
    assert hub.written_offices_sql(1) == ("NOT (office = ANY($1::text[]))", ["jaksel", "bandung"])
    assert stream_profile(Topology(), "guidance").sources is None  # no leaves: as before


@pytest.mark.parametrize("bad", [{"office": "Jak Sel"}, {"leaves": ("a.b",)},
                                 {"office": "jaksel", "leaves": ("bandung",)}])
def test_office_codes_must_be_subject_tokens_and_a_leaf_sources_no_leaves(bad):
    with pytest.raises(ValueError):
        Topology(**bad)
