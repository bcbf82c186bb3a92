"""The back office as operators use it: the dashboard, the token pages and the actions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils import timezone
from django_q.models import OrmQ

from glisk.backoffice.selectors import dashboard_get
from lifecycle.models import Token, TokenTransition
from tests.factories import (
    AuthorFactory,
    MintEventFactory,
    RevealTransactionFactory,
    TokenFactory,
    WebhookDeliveryFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def known_tokens():
    """A known mix: 2 detected (one stuck), 1 uploading, 2 ready, 3 revealed (2 this hour), 2 failed."""
    now = timezone.now()
    author = AuthorFactory.create()
    TokenFactory.create(token_id=1, author=author, status="detected")
    TokenFactory.create(
        token_id=2, author=author, status="detected", status_changed_at=now - timedelta(hours=1)
    )
    up = TokenFactory.create(token_id=3, author=author, status="uploading", image_content_type="image/png")
    up.image.save("3.png", ContentFile(b"\x89PNG\r\n\x1a\nfake"), save=True)
    TokenFactory.create(token_id=4, author=author, status="ready", metadata_cid="bafkmeta4")
    TokenFactory.create(token_id=5, author=author, status="ready", metadata_cid="bafkmeta5")
    for token_id, when in ((6, now), (7, now), (8, now - timedelta(hours=5))):
        TokenFactory.create(
            token_id=token_id,
            author=author,
            status="revealed",
            metadata_cid=f"bafk{token_id}",
            revealed_at=when,
        )
    TokenFactory.create(
        token_id=9,
        author=author,
        status="failed",
        failed_stage="generating",
        last_error="Replicate answered 401",
    )
    TokenFactory.create(
        token_id=10,
        author=author,
        status="failed",
        failed_stage="uploading",
        last_error="Pinata answered 403",
        image="images/10.png",
    )
    Token.objects.filter(pk__in=[1, 3, 4, 5, 9, 10]).update(created_at=now - timedelta(minutes=5))
    Token.objects.filter(pk=2).update(created_at=now - timedelta(hours=2))
    return author


def test_dashboard_figures_match_a_known_set_of_tokens(known_tokens):
    board = dashboard_get(with_chain=False)
    assert board.counts == {
        "detected": 2,
        "generating": 0,
        "uploading": 1,
        "ready": 2,
        "revealed": 3,
        "failed": 2,
    }
    assert board.failed == 2
    assert board.stuck == 1  # token 2: an hour in `detected`
    assert sum(n for _, n in board.revealed_per_hour) == 3
    assert board.revealed_per_hour[-1][1] == 2
    assert board.oldest_unrevealed_age > timedelta(hours=1, minutes=59)


def test_dashboard_page_shows_charts_counts_and_links(admin_client, known_tokens):
    WebhookDeliveryFactory.create()
    response = admin_client.get(reverse("admin:index"))
    html = response.content.decode()
    assert response.status_code == 200
    assert html.count('class="glisk-chart"') == 2
    assert "Tokens by status" in html and "Tokens revealed, last 24h (UTC)" in html
    assert 'id="failed-count"' in html and '?status__exact=failed">2</a>' in html
    assert '?stuck=yes">1</a>' in html
    chart = html.split('class="glisk-chart"')[1].split("</svg>")[0]
    assert "http" not in chart and ">2<" in chart  # drawn here with the figures, nothing fetched
    # It refreshes itself from a fragment of the same figures, in the range asked for.
    assert "glisk/dashboard.js" in html and 'data-url="/admin/dashboard/?range=24h"' in html
    fragment = admin_client.get(reverse("admin:glisk_dashboard"), {"range": "1h"}).content.decode()
    assert fragment.lstrip().startswith('<div class="glisk-dash" id="dashboard">')
    assert "Tokens revealed, last 1h (UTC)" in fragment and '?stuck=yes">1</a>' in fragment
    week = admin_client.get(reverse("admin:index"), {"range": "7d"}).context["board"]
    assert len(week.revealed_per_hour) == 7 and sum(n for _, n in week.revealed_per_hour) == 3


def test_the_errors_page_groups_failures_and_links_to_the_tokens(admin_client, known_tokens):
    from lifecycle.models import ImageJob

    for token_id, error_class in ((9, "http_401"), (9, "http_401"), (2, "http_401"), (1, "timeout")):
        ImageJob.objects.create(
            token_id=token_id,
            attempt=1,
            provider="replicate",
            prompt_text="p",
            outcome="transient_error",
            error_class=error_class,
        )
    html = admin_client.get(reverse("admin:glisk_errors")).content.decode()
    rows = html.split('id="error-groups"')[1]
    assert rows.index("http_401") < rows.index("timeout")  # most frequent first
    assert "<td>3</td>\n      <td>2</td>" in rows  # 3 attempts on 2 tokens
    listed = admin_client.get(reverse("admin:lifecycle_token_changelist"), {"error_class": "http_401"})
    assert sorted(t.pk for t in listed.context["cl"].result_list) == [2, 9]


def test_the_clusters_page_lists_what_django_q_reports(admin_client):
    html = admin_client.get(reverse("admin:glisk_clusters")).content.decode()
    assert "No cluster has reported in the last 30 minutes." in html


def test_stuck_filter_lists_the_stuck_token(admin_client, known_tokens):
    response = admin_client.get(reverse("admin:lifecycle_token_changelist"), {"stuck": "yes"})
    assert list(response.context["cl"].result_list.values_list("token_id", flat=True)) == [2]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status__exact": "failed"}, [9, 10]),
        ({"error_stage": "image"}, [9]),
        ({"error_stage": "ipfs"}, [10]),
        ({"q": "bafkmeta4"}, [4]),
        ({"q": "7"}, [7]),
    ],
)
def test_token_list_filters_and_search(admin_client, known_tokens, params, expected):
    response = admin_client.get(reverse("admin:lifecycle_token_changelist"), params)
    assert sorted(response.context["cl"].result_list.values_list("token_id", flat=True)) == expected


def test_token_list_searches_wallet_and_tx_hash(admin_client):
    event = MintEventFactory.create()
    TokenFactory.create(token_id=50, author=event.author, mint_event=event)
    for q in (event.tx_hash, event.author.wallet_address):
        response = admin_client.get(reverse("admin:lifecycle_token_changelist"), {"q": q})
        assert list(response.context["cl"].result_list.values_list("token_id", flat=True)) == [50]


def test_token_page_shows_image_metadata_links_timeline_and_attempts(admin_client, settings):
    import dataclasses

    settings.GLISK = dataclasses.replace(settings.GLISK, explorer_url="https://sepolia.basescan.org")
    event = MintEventFactory.create()
    tx = RevealTransactionFactory.create(status="confirmed", token_ids=[77])
    token = TokenFactory.create(
        token_id=77,
        author=event.author,
        mint_event=event,
        status="revealed",
        image_cid="bafkimage77",
        metadata_cid="bafkmeta77",
        reveal_transaction=tx,
        metadata={"name": "GLISK S0 #77"},
        prompt_text="a glass fox",
        image_content_type="image/png",
    )
    token.image.save("77.png", ContentFile(b"\x89PNG\r\n\x1a\n77"), save=True)
    TokenTransition.objects.create(
        token=token, from_status="ready", to_status="revealed", actor="stage:reveal"
    )
    html = admin_client.get(reverse("admin:lifecycle_token_change", args=[77])).content.decode()
    for fragment in (
        "a glass fox",
        "ipfs://bafkimage77",
        "ipfs://bafkmeta77",
        "/ipfs/bafkmeta77",
        "&quot;name&quot;: &quot;GLISK S0 #77&quot;",
        f"https://sepolia.basescan.org/tx/{event.tx_hash}",
        f"https://sepolia.basescan.org/tx/{tx.tx_hash}",
        "stage:reveal",
        "Status timeline",
        "Image attempts",
        "IPFS attempts",
        reverse("admin:lifecycle_token_image", args=[77]),
    ):
        assert fragment in html, fragment
    image = admin_client.get(reverse("admin:lifecycle_token_image", args=[77]))
    assert image["Content-Type"] == "image/png" and image.content.endswith(b"77")


def test_devnet_has_no_explorer_links(admin_client):
    event = MintEventFactory.create()
    TokenFactory.create(token_id=5, author=event.author, mint_event=event)
    html = admin_client.get(reverse("admin:lifecycle_token_change", args=[5])).content.decode()
    assert event.tx_hash in html and "basescan" not in html


def act(client, token_id, action, reason="checked by hand", confirmed="yes"):
    return client.post(
        reverse("admin:lifecycle_token_act", args=[token_id, action]),
        {"reason": reason, "confirmed": confirmed},
        follow=True,
    )


def messages_of(response):
    return [str(m) for m in response.context["messages"]]


def test_retry_button_sends_a_failed_token_back_and_records_who_and_why(admin_client, known_tokens):
    response = act(admin_client, 9, "retry", "rotated the Replicate token")
    assert Token.objects.get(pk=9).status == "generating"
    last = TokenTransition.objects.filter(token_id=9).last()
    assert (last.actor, last.reason) == ("operator:admin", "rotated the Replicate token")
    assert any("goes back to generating" in m for m in messages_of(response))
    assert OrmQ.objects.count() == 1
    # The History button shows it too.
    history = admin_client.get(reverse("admin:lifecycle_token_history", args=[9])).content.decode()
    assert "Retry from the stage that failed" in history and "goes back to generating" in history


def test_regenerate_and_repin_and_reveal_now_and_mark_failed(admin_client, known_tokens):
    act(admin_client, 4, "regenerate")
    token = Token.objects.get(pk=4)
    assert token.status == "generating" and token.metadata_cid == "" and token.image_cid == ""
    act(admin_client, 10, "repin")
    assert Token.objects.get(pk=10).status == "uploading"
    act(admin_client, 5, "reveal_now")
    assert Token.objects.get(pk=5).reveal_requested_at is not None
    act(admin_client, 1, "mark_failed", "bad prompt")
    token = Token.objects.get(pk=1)
    assert token.status == "failed" and "marked failed by admin: bad prompt" in token.last_error


@pytest.mark.parametrize(
    ("token_id", "action", "why"),
    [
        (6, "regenerate", "revealed on chain"),
        (6, "mark_failed", "revealed already"),
        (4, "retry", "not failed"),
        (1, "repin", "can be re-pinned"),
        (3, "reveal_now", "only ready tokens"),
        (1, "regenerate", "being made already"),
    ],
)
def test_an_action_on_a_token_in_the_wrong_state_is_refused_and_changes_nothing(
    admin_client, known_tokens, token_id, action, why
):
    before = Token.objects.values().get(pk=token_id)
    transitions = TokenTransition.objects.count()
    response = act(admin_client, token_id, action)
    assert any(why in m and m.startswith("refused") for m in messages_of(response)), messages_of(response)
    assert Token.objects.values().get(pk=token_id) == before
    assert TokenTransition.objects.count() == transitions


def test_a_reason_is_required(admin_client, known_tokens):
    response = act(admin_client, 9, "retry", reason="  ")
    assert any("reason is required" in m for m in messages_of(response))
    assert Token.objects.get(pk=9).status == "failed"


def test_token_in_a_reveal_in_flight_cannot_be_changed(admin_client, known_tokens):
    tx = RevealTransactionFactory.create(status="sent", token_ids=[4])
    Token.objects.filter(pk=4).update(reveal_transaction=tx)
    response = act(admin_client, 4, "regenerate")
    assert any(f"in reveal transaction {tx.tx_hash} (sent)" in m for m in messages_of(response))
    assert Token.objects.get(pk=4).status == "ready"


def test_list_actions_apply_to_each_selected_token(admin_client, known_tokens):
    url = reverse("admin:lifecycle_token_changelist")
    response = admin_client.post(
        url, {"action": "action_retry", "_selected_action": [9, 10, 4], "reason": "bulk retry"}, follow=True
    )
    assert Token.objects.get(pk=9).status == "generating" and Token.objects.get(pk=10).status == "uploading"
    assert any("refused" in m and "#4" in m for m in messages_of(response))
    assert Token.objects.get(pk=4).status == "ready"


def test_buttons_are_post_only(admin_client, known_tokens):
    response = admin_client.get(reverse("admin:lifecycle_token_act", args=[9, "retry"]))
    assert response.status_code == 405
    assert Token.objects.get(pk=9).status == "failed"


@pytest.fixture
def viewer_client(client):
    """Staff who may look at tokens but not operate on them."""
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_token", "view_author"]))
    client.force_login(user)
    return client


def test_operating_needs_the_permission(viewer_client, known_tokens):
    assert viewer_client.get(reverse("admin:lifecycle_token_change", args=[9])).status_code == 200
    assert act(viewer_client, 9, "retry").status_code == 403
    assert Token.objects.get(pk=9).status == "failed"
    html = viewer_client.get(reverse("admin:lifecycle_token_change", args=[9])).content.decode()
    assert 'id="operator-actions"' not in html
    changelist = viewer_client.get(reverse("admin:lifecycle_token_changelist")).content.decode()
    assert "action_retry" not in changelist


def test_operator_with_permission_sees_the_buttons(admin_client, known_tokens):
    html = admin_client.get(reverse("admin:lifecycle_token_change", args=[9])).content.decode()
    assert 'id="operator-actions"' in html and 'method="post"' in html


def test_author_prompt_editing_is_validated(admin_client):
    author = AuthorFactory.create(prompt_text="old")
    url = reverse("admin:authors_author_change", args=[author.pk])
    data = {
        "wallet_address": author.wallet_address.lower(),
        "prompt_text": "x" * 1001,
    }
    response = admin_client.post(url, data)
    assert response.status_code == 200 and "at most 1000 characters" in response.content.decode()
    data["prompt_text"] = "  a new prompt  "
    admin_client.post(url, data)
    author.refresh_from_db()
    assert author.prompt_text == "a new prompt" and author.wallet_address.startswith("0x")
    data["prompt_text"] = ""
    admin_client.post(url, data)
    author.refresh_from_db()
    assert author.prompt_text is None


def test_authors_list_is_a_leaderboard_with_counts_by_status(admin_client, known_tokens):
    AuthorFactory.create()  # no tokens
    response = admin_client.get(reverse("admin:authors_author_changelist"))
    rows = list(response.context["cl"].result_list)
    assert rows[0].pk == known_tokens.pk and rows[0].tokens_total == 10 and rows[0].tokens_revealed == 3
    assert rows[0].tokens_failed == 2


def test_webhook_delivery_page_pretty_prints_and_replays(admin_client):
    delivery = WebhookDeliveryFactory.create(
        body=b'{"webhookId": "wh_1", "event": {"error": "capacity"}}',
        headers={"X-Alchemy-Signature": "00"},
        signature_valid=False,
    )
    html = admin_client.get(
        reverse("admin:chain_webhookdelivery_change", args=[delivery.pk])
    ).content.decode()
    assert "&quot;webhookId&quot;: &quot;wh_1&quot;" in html
    response = admin_client.post(
        reverse("admin:chain_webhookdelivery_changelist"),
        {"action": "replay", "_selected_action": [delivery.pk]},
        follow=True,
    )
    assert any("does not verify" in m for m in messages_of(response))


def test_reveal_transaction_page_shows_cost_and_tokens(admin_client):
    tx = RevealTransactionFactory.create(
        status="confirmed", token_ids=[1, 2], gas_used=100_000, effective_gas_price_wei=2 * 10**9
    )
    html = admin_client.get(reverse("admin:chain_revealtransaction_change", args=[tx.pk])).content.decode()
    assert "0.00020000" in html and "#1" in html and "#2" in html


def test_django_q_pages_are_reachable(admin_client):
    for name in (
        "django_q_schedule_changelist",
        "django_q_success_changelist",
        "django_q_failure_changelist",
        "django_q_ormq_changelist",
    ):
        assert admin_client.get(reverse(f"admin:{name}")).status_code == 200


def test_the_token_page_offers_only_the_actions_that_apply(admin_client, known_tokens):
    def buttons(token_id):
        html = admin_client.get(reverse("admin:lifecycle_token_change", args=[token_id])).content.decode()
        return {
            name
            for name in ("retry", "regenerate", "repin", "reveal_now", "mark_failed")
            if f'value="{name}"' in html
        }

    assert buttons(9) == {"retry", "regenerate"}  # failed while generating: no stored image to re-pin
    assert buttons(10) == {"retry", "regenerate", "repin"}
    assert buttons(4) == {"regenerate", "reveal_now", "mark_failed"}
    assert buttons(1) == {"mark_failed"}
    assert buttons(6) == set()  # revealed: nothing left to do


def test_the_image_view_serves_only_images_to_those_who_may_view_tokens(admin_client, client, settings):
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    image = TokenFactory.create(status="uploading", image_content_type="text/html")
    image.image.save("a.png", ContentFile(png), save=True)
    html = TokenFactory.create(status="uploading", image_content_type="text/html")
    html.image.save("b.png", ContentFile(b"<script>alert(1)</script>"), save=True)
    url = reverse("admin:lifecycle_token_image", args=[image.pk])

    served = admin_client.get(url)
    assert served.status_code == 200 and served.content == png
    assert served["Content-Type"] == "image/png"  # sniffed, not the declared text/html
    assert served["Content-Disposition"].startswith("inline")
    assert served["X-Content-Type-Options"] == "nosniff" and "sandbox" in served["Content-Security-Policy"]
    assert admin_client.get(reverse("admin:lifecycle_token_image", args=[html.pk])).status_code == 404

    staff = User.objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(staff)
    assert client.get(url).status_code == 403  # staff, but no permission to view tokens
    staff.user_permissions.add(Permission.objects.get(codename="view_token"))
    assert client.get(url).status_code == 200


def test_reveal_now_asks_first_says_what_goes_and_sends_only_the_chosen_tokens(admin_client, known_tokens):
    ready = list(Token.objects.filter(status="ready", reveal_transaction=None).values_list("pk", flat=True))
    chosen, others = ready[0], ready[1:]
    asked = act(admin_client, chosen, "reveal_now", confirmed="")
    page = asked.content.decode()
    assert "please confirm" in page and f"token #{chosen}" in page and "only" in page
    assert Token.objects.get(pk=chosen).reveal_requested_at is None  # nothing happened yet
    done = act(admin_client, chosen, "reveal_now", reason="collector waiting")
    assert any(f"#{chosen}" in m and "without waiting for a batch" in m for m in messages_of(done))
    timeline = TokenTransition.objects.filter(token_id=chosen).last()
    assert timeline.actor == "operator:admin" and "collector waiting" in timeline.reason
    # The keeper's next batch carries the chosen token only, not every ready one.
    from lifecycle.selectors import reveal_queue

    queue = reveal_queue(limit=50)
    assert queue[0].token_id == chosen and queue[0].reveal_requested_at is not None
    assert all(t.reveal_requested_at is None for t in queue if t.token_id in others)


def test_handles_are_read_only_and_an_operator_unlinks_with_a_reason(admin_client):
    from authors.models import SocialLink

    author = AuthorFactory.create(
        prompt_text="p", twitter_handle="someone", farcaster_handle="glisk", twitter_verified=True
    )
    url = reverse("admin:authors_author_change", args=[author.pk])
    data = {
        "wallet_address": author.wallet_address,
        "prompt_text": "p",
        "twitter_handle": "forged",
        "farcaster_verified": "on",
    }
    admin_client.post(url, data)
    author.refresh_from_db()
    assert author.twitter_handle == "someone"  # not a form field: only a proven link sets it
    assert not author.farcaster_verified  # nor is whether a link is pinned into metadata
    response = admin_client.post(
        url, {**data, "unlink_x_reason": "  impersonation report #12  "}, follow=True
    )
    author.refresh_from_db()
    assert author.twitter_handle == "" and author.farcaster_handle == "glisk"
    assert not author.twitter_verified
    assert any("X account unlinked: impersonation report #12" in m for m in messages_of(response))
    (row,) = SocialLink.objects.filter(author=author)
    assert (row.action, row.handle, row.actor, row.reason) == (
        "unlink",
        "someone",
        "operator:admin",
        "impersonation report #12",
    )
    html = admin_client.get(url).content.decode()
    assert "impersonation report #12" in html and "operator:admin" in html
    assert "Twitter verified" in html and "wallet proof" in html


def test_the_token_list_searches_what_the_token_page_shows_newest_first(admin_client):
    from lifecycle.providers.ipfs import cid_v0, cid_v1

    author = AuthorFactory.create()
    image, meta = cid_v1(b"image"), cid_v0(b"metadata")
    found = TokenFactory.create(
        token_id=21, author=author, status="revealed", image_cid=image, metadata_cid=meta
    )
    for token_id in (20, 22):
        TokenFactory.create(token_id=token_id, author=author)
    url = reverse("admin:lifecycle_token_changelist")

    def ids(query):
        return [t.pk for t in admin_client.get(url, {"q": query}).context["cl"].result_list]

    assert ids("") == [22, 21, 20]  # newest first
    for query in (
        f"ipfs://{meta}",
        f"https://gateway.pinata.cloud/ipfs/{meta}",
        f"http://127.0.0.1:8000/ipfs/{image}/",
        image,
    ):
        assert ids(query) == [found.pk], query
    assert ids(author.wallet_address.lower()) == [22, 21, 20]
    assert ids(f"https://gw.example/ipfs/{meta}?filename=21.json") == [found.pk]
    for odd in ("²", "#¹²", "9" * 5000, "%", "' OR 1=1 --"):  # never a 500 (found in review)
        assert admin_client.get(url, {"q": odd}).status_code == 200, odd


def test_the_failed_stage_filter_offers_only_stages_and_the_token_page_has_seconds_and_durations(
    admin_client,
):
    token = TokenFactory.create(token_id=31, status="failed", failed_stage="uploading")
    start = timezone.now() - timedelta(seconds=30)
    Token.objects.filter(pk=token.pk).update(created_at=start)
    TokenTransition.objects.create(
        token=token,
        from_status="detected",
        to_status="generating",
        actor="t",
        created_at=start + timedelta(seconds=2),
    )
    TokenTransition.objects.create(
        token=token,
        from_status="generating",
        to_status="uploading",
        actor="t",
        created_at=start + timedelta(seconds=9.5),
    )
    changelist = admin_client.get(reverse("admin:lifecycle_token_changelist"))
    (stage_filter,) = [f for f in changelist.context["cl"].filter_specs if f.title == "failed stage"]
    offered = [choice["display"] for choice in stage_filter.choices(changelist.context["cl"])]
    assert "Revealed" not in offered and "Failed" not in offered and "Uploading" in offered
    assert (
        admin_client.get(reverse("admin:lifecycle_token_changelist"), {"failed_stage": "uploading"})
        .context["cl"]
        .result_count
        == 1
    )
    html = admin_client.get(reverse("admin:lifecycle_token_change", args=[31])).content.decode()
    assert start.strftime("%Y-%m-%d %H:%M:%S") in html  # to the second
    assert "2.0 s" in html and "7.5 s" in html  # each stage's duration in the timeline
    assert "View site" not in html  # there is no public site to view


def test_the_dashboard_shows_each_stages_throughput_and_latency_for_the_last_hour(admin_client):
    from chain.models import MintEvent
    from glisk.backoffice.selectors import stage_activity
    from lifecycle.models import ImageJob
    from tests.factories import MintEventFactory

    now = timezone.now()
    token = TokenFactory.create()
    for ms, outcome in ((1000, "succeeded"), (3000, "succeeded"), (500, "transient_error")):
        ImageJob.objects.create(
            token=token,
            attempt=1,
            provider="replicate",
            prompt_text="p",
            outcome=outcome,
            duration_ms=ms,
            finished_at=now,
        )
    mint = MintEventFactory.create()
    MintEvent.objects.filter(pk=mint.pk).update(block_timestamp=now - timedelta(seconds=20))
    TokenFactory.create(
        status="revealed", metadata_cid="bafk", mint_event=mint, revealed_at=now - timedelta(seconds=8)
    )
    image, ipfs, reveal = stage_activity(now=now)
    assert (image.stage, image.done, image.failed, image.p50_seconds) == ("image", 2, 1, 2.0)
    assert ipfs.done == 0 and ipfs.p50_seconds is None
    assert reveal.done == 1 and reveal.p50_seconds is not None and round(reveal.p50_seconds) == 12
    html = admin_client.get(reverse("admin:index")).content.decode()
    assert 'id="stage-activity"' in html and "2.00 s" in html


def test_the_console_pages_need_the_permissions_of_what_they_show(client, known_tokens):
    """Found in review: any staff user could read the errors page (attempt errors, reveal errors)."""
    bare = User.objects.create_user("bare", password="pw", is_staff=True)
    client.force_login(bare)
    for name in ("admin:glisk_errors", "admin:glisk_clusters", "admin:glisk_dashboard"):
        assert client.get(reverse(name)).status_code == 403, name
    assert 'id="glisk-live"' not in client.get(reverse("admin:index")).content.decode()
    bare.user_permissions.add(*Permission.objects.filter(codename__in=["view_token"]))
    client.force_login(User.objects.get(pk=bare.pk))
    assert client.get(reverse("admin:glisk_clusters")).status_code == 200
    assert client.get(reverse("admin:glisk_errors")).status_code == 403  # attempts need their own
    bare.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_imagejob", "view_revealtransaction"])
    )
    client.force_login(User.objects.get(pk=bare.pk))
    assert client.get(reverse("admin:glisk_errors")).status_code == 200
