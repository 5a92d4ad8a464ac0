"""The small rules of the API (docs/http.md) that live in shared/: titles, previews, ids,
tokens, settings."""

from __future__ import annotations

import base64
import json

import pytest

from shared.config import SETTINGS, ConfigError, load_settings
from shared.errors import InvalidRequest
from shared.ids import derived_session_id, is_session_id, message_item_id, new_session_id
from shared.paging import decode_page_token, encode_page_token
from shared.signing import decode_json
from shared.storage.keyset import encode_position
from shared.titles import make_preview, make_title


@pytest.mark.parametrize(
    ("message", "title"),
    [
        ("hello", "hello"),
        ("  many   spaces\nand lines  ", "many spaces and lines"),
        ("x" * 80, "x" * 50),
        ("word " * 20, "word word word word word word word word word word"),
        ("a" * 30 + " " + "b" * 40, "a" * 30),
        ("short " + "c" * 60, "short " + "c" * 44),
    ],
)
def test_title_is_first_50_characters_cut_at_a_word(message: str, title: str) -> None:
    assert make_title(message) == title
    assert len(make_title(message)) <= 50


def test_preview_is_first_100_characters() -> None:
    assert make_preview("p" * 150) == "p" * 100
    assert make_preview("short") == "short"


def test_session_ids_are_random_and_of_one_shape() -> None:
    ids = {new_session_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(is_session_id(i) for i in ids)
    for bad in (
        "",
        "s_",
        "s_" + "g" * 32,
        "S_" + "0" * 32,
        "s_" + "0" * 31,
        "../x",
        "s_" + "0" * 33,
    ):
        assert not is_session_id(bad)


def test_derived_ids_depend_on_user_and_client_id() -> None:
    a = derived_session_id("a@x.com", "c1")
    assert a == derived_session_id("a@x.com", "c1")
    assert a != derived_session_id("b@x.com", "c1")
    assert a != derived_session_id("a@x.com", "c2")
    assert is_session_id(a)


def test_message_ids_sort_in_sequence_order() -> None:
    ids = [message_item_id("s_1", seq) for seq in (1, 2, 10, 100, 1000)]
    assert ids == sorted(ids)
    assert ids[0] == "s_1:00000001"


KEY = "k" * 32


POSITION = encode_position("2026-11-22T10:00:00Z", "s_1", '{"token":"+#x"}')


def test_page_tokens_round_trip_and_are_bound_to_the_view_and_user() -> None:
    token = encode_page_token(KEY, "active", POSITION, "a@x.com")
    assert decode_page_token(KEY, token, "active", "a@x.com") == POSITION
    with pytest.raises(InvalidRequest):
        decode_page_token(KEY, token, "archive", "a@x.com")
    with pytest.raises(InvalidRequest):
        decode_page_token(KEY, token, "active", "b@x.com")
    for bad in ("", "!!!", "e30", "bnVsbA", "e30.", ".", "e30.AAAA"):
        with pytest.raises(InvalidRequest):
            decode_page_token(KEY, bad, "active", "a@x.com")


def test_a_page_token_holds_the_position_s_values_not_a_token_in_a_token() -> None:
    body, _, _ = encode_page_token(KEY, "active", POSITION, "a@x.com").rpartition(".")
    assert decode_json(body) == ["2026-11-22T10:00:00Z", "s_1", '{"token":"+#x"}']


def test_page_tokens_are_sealed_with_the_server_key() -> None:
    """Only a holder of the key can make a token: the old unkeyed shape, a token sealed with
    another key and an altered one are all refused before their position is decoded."""
    token = encode_page_token(KEY, "active", POSITION, "a@x.com")
    with pytest.raises(InvalidRequest):
        decode_page_token("x" * 32, token, "active", "a@x.com")
    body, _, mac = token.rpartition(".")
    forged_body = base64.urlsafe_b64encode(b'"\\ud800"').decode().rstrip("=")
    for altered in (f"{forged_body}.{mac}", f"{body}.{mac[:-2]}AA", body, f"{token}x"):
        with pytest.raises(InvalidRequest):
            decode_page_token(KEY, altered, "active", "a@x.com")
    unkeyed = base64.urlsafe_b64encode(
        json.dumps({"w": "active", "u": "0" * 16, "t": "position"}).encode()
    ).decode()
    with pytest.raises(InvalidRequest):
        decode_page_token(KEY, unkeyed, "active", "a@x.com")
    with pytest.raises(InvalidRequest):
        decode_page_token(KEY, "a" * 9000, "active", "a@x.com")


def test_settings_defaults_follow_api_md() -> None:
    settings = load_settings({})
    assert settings.resolved_storage_backend == "sqlite"
    assert settings.sqlite_path == ".data/conversations.db"
    assert settings.resolved_llm_provider == "echo"
    assert settings.auth_mode is None  # fail closed
    assert (settings.max_history_messages, settings.max_context_tokens) == (20, 8000)
    assert settings.max_message_chars == 16000
    assert (settings.archive_after_days, settings.archive_schedule) == (30, "0 0 3 * * *")
    assert settings.port == 7071
    assert settings.cosmos_database == "chat"
    assert settings.cosmos_container == "Conversations"
    assert settings.cosmos_archive_container == "ConversationsArchive"


def test_backend_and_provider_are_chosen_from_what_is_set() -> None:
    cosmos = load_settings({"COSMOS_ENDPOINT": "https://x.documents.azure.com"})
    assert cosmos.resolved_storage_backend == "cosmos"
    azure = load_settings(
        {"AZURE_OPENAI_ENDPOINT": "https://x.openai.azure.com", "AZURE_OPENAI_DEPLOYMENT": "d"}
    )
    assert azure.resolved_llm_provider == "azure-openai"
    assert (
        load_settings({"OPENAI_BASE_URL": "http://127.0.0.1:1"}).resolved_llm_provider == "openai"
    )
    assert load_settings({"OPENAI_API_KEY": "k"}).resolved_llm_provider == "openai"


@pytest.mark.parametrize(
    "environ",
    [
        {"STORAGE_BACKEND": "mongo"},
        {"STORAGE_BACKEND": "cosmos"},
        {"AUTH_MODE": "none"},
        {"AUTH_MODE": "jwt"},
        {"MAX_HISTORY_MESSAGES": "0"},
        {"PORT": "http"},
        {"CORS_ALLOWED_ORIGINS": "https://a.example, *"},
        {"LLM_PROVIDER": "azure-openai"},
    ],
)
def test_bad_settings_name_the_variable(environ: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ)
    name = next(iter(environ))
    assert name in str(caught.value) or "needs" in str(caught.value)


def test_empty_variables_count_as_unset_and_every_setting_is_listed() -> None:
    assert load_settings({"AUTH_MODE": ""}).auth_mode is None
    assert "AUTH_MODE" in SETTINGS and "ARCHIVE_SCHEDULE" in SETTINGS
    assert len(SETTINGS) == len(set(SETTINGS))


def test_one_rule_says_whether_the_token_settings_are_complete() -> None:
    # jwt refuses to start and easyauth refuses every call, both naming exactly what is missing.
    from shared.auth import configuration_problem

    partial = {"AUTH_ISSUER": "https://issuer.example", "AUTH_JWKS_URL": "https://keys.example"}
    with pytest.raises(ConfigError, match=r"AUTH_MODE=jwt needs AUTH_AUDIENCE$"):
        load_settings({"AUTH_MODE": "jwt", **partial})
    easyauth = load_settings({"AUTH_MODE": "easyauth", **partial})
    assert easyauth.missing_token_settings() == ["AUTH_AUDIENCE"]
    assert configuration_problem(easyauth) == (
        "AUTH_MODE=easyauth needs AUTH_AUDIENCE to verify the caller's token"
    )
    assert configuration_problem(load_settings({"AUTH_MODE": "dev", **partial})) is None


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("short", 10, "short"),
        ("aaaaa bbbbbbbbbb", 10, "aaaaa"),  # the word boundary keeps half: cut there
        ("aaaa bbbbbbbbbb", 10, "aaaa bbbbb"),  # it would keep less than half: cut hard
        ("aaaaaaaaaaaaaaa", 10, "aaaaaaaaaa"),  # one long word
        ("aaaaaaaaaa bbb", 10, "aaaaaaaaaa"),  # the limit falls on a space
    ],
)
def test_both_titles_cut_at_a_word_only_when_that_keeps_half(
    text: str, limit: int, expected: str
) -> None:
    from shared.titles import cut_at_word

    assert cut_at_word(text, limit) == expected
