"""Authors link X and Farcaster accounts, driven over real HTTP the way the frontend drives them:
the X flow through the X stand-in (authorize, token, users/me), the Farcaster flow with Sign In
With Farcaster messages signed by fids' custody keys, the IdRegistry on anvil and the name
registry stand-in."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.core.cache import cache
from django.utils import timezone
from eth_account import Account
from eth_account.messages import encode_defunct

from authors.models import Author, SocialLink, XLinkRequest
from glisk.devtools import devnet
from glisk.devtools.standins.fnames import FnamesStandIn, sign_in_message
from glisk.devtools.standins.x import XStandIn
from tests.factories import AuthorFactory

FRONTEND = "https://glisk.example"
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fresh_throttles(django_db_blocker):
    with django_db_blocker.unblock():
        cache.clear()


def sign(key, message: str) -> str:
    return "0x" + Account.sign_message(
        encode_defunct(text=message), private_key=key.key
    ).signature.hex().removeprefix("0x")


# --- X ----------------------------------------------------------------------------------------


@pytest.fixture
def x(live_server, settings):
    standin = XStandIn().start()
    settings.GLISK = dataclasses.replace(
        settings.GLISK,
        frontend_url=FRONTEND,
        x_client_id=standin.client_id,
        x_client_secret=standin.client_secret,
        x_redirect_uri=f"{live_server.url}/api/authors/x/callback",
        x_authorize_url=standin.authorize_url,
        x_api_url=standin.url,
        social_timeout_seconds=2.0,
    )
    yield standin
    standin.stop()


def start_x(live_server, key, *, message=None, browser=None):
    """The frontend's call, from `browser` (a requests.Session: it keeps the sign-in cookie)."""
    wallet = key.address
    message = message if message is not None else f"Link X account for wallet: {wallet}"
    return (browser or requests).post(
        f"{live_server.url}/api/authors/x/auth/start",
        json={"wallet_address": wallet.lower(), "message": message, "signature": sign(key, message)},
        timeout=10,
    )


def consent_at_x(authorization_url: str) -> str:
    """What the browser does at X: the (stand-in's) consent sends it back to our callback."""
    at_x = requests.get(authorization_url, allow_redirects=False, timeout=10)
    assert at_x.status_code == 302
    return at_x.headers["Location"]


def follow_callback(url: str, browser=None) -> dict[str, str]:
    """Our callback's 307 to the frontend (in `browser`), as the query the frontend reads."""
    back = (browser or requests).get(url, allow_redirects=False, timeout=10)
    assert back.status_code == 307, back.text
    location = urlsplit(back.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == f"{FRONTEND}/profile"
    return {k: v[-1] for k, v in parse_qs(location.query).items()}


def test_linking_an_x_account_end_to_end(live_server, x):
    key, browser = Account.create(), requests.Session()
    started = start_x(live_server, key, browser=browser)
    assert started.status_code == 200, started.text
    url = started.json()["authorization_url"]
    query = parse_qs(urlsplit(url).query)
    assert url.startswith(x.authorize_url)
    assert query["code_challenge_method"] == ["S256"] and query["scope"] == ["users.read tweet.read"]
    assert query["redirect_uri"] == [f"{live_server.url}/api/authors/x/callback"]
    assert x.client_secret not in url

    callback = consent_at_x(url)
    assert follow_callback(callback, browser) == {
        "tab": "author",
        "x_linked": "true",
        "username": "glisk_artist",
    }
    author = Author.objects.get(wallet_address=key.address)
    assert author.twitter_handle == "glisk_artist" and author.x_user_id == x.user["id"]
    (link,) = SocialLink.objects.filter(author=author)
    assert (link.network, link.action, link.handle, link.actor) == (
        "x",
        "link",
        "glisk_artist",
        f"wallet:{key.address}",
    )
    assert link.proof == {"x_user_id": x.user["id"]}
    # The token exchange authenticated as a confidential client and proved the PKCE verifier.
    (exchange,) = [r for r in x.requests if r["method"] == "POST"]
    assert exchange["auth"].startswith("Basic ") and exchange["form"]["code_verifier"]
    # The frontend reads it back.
    profile = requests.get(f"{live_server.url}/api/authors/{key.address}", timeout=10).json()
    assert profile["twitter_handle"] == "glisk_artist"

    # Replayed by the same browser (its back button, the cookie restored): nothing more happens.
    browser.cookies.set("glisk_x_sign_in", hashlib.sha256(query["state"][0].encode()).hexdigest())
    assert follow_callback(callback, browser) == {"tab": "author", "x_linked": "false", "error": "used_state"}
    assert SocialLink.objects.count() == 1


def test_any_web_worker_finishes_the_flow_and_the_state_expires(live_server, x, settings):
    """The state lives in the database (not one process's memory), expires, and anything that
    is not a state we issued is unknown (never a 500)."""
    key, browser = Account.create(), requests.Session()
    callback = consent_at_x(start_x(live_server, key, browser=browser).json()["authorization_url"])
    XLinkRequest.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert follow_callback(callback, browser)["error"] == "expired_state"
    settings.GLISK = dataclasses.replace(settings.GLISK, x_require_same_browser=False)
    base = f"{live_server.url}/api/authors/x/callback"
    for query in ("?code=abc&state=forged", f"?code=abc&state={'a' * 43}", "?code=abc&state=%00", ""):
        assert follow_callback(base + query)["error"] == "unknown_state"
    assert not Author.objects.filter(twitter_handle__gt="").exists()


def test_a_sign_in_started_by_someone_else_cannot_collect_a_victims_x_account(live_server, x):
    """The attacker starts a sign-in for their own wallet and gets the victim to open the
    authorization URL: the victim's browser comes back without the starting browser's cookie."""
    attacker, victim = Account.create(), requests.Session()
    url = start_x(live_server, attacker, browser=requests.Session()).json()["authorization_url"]
    callback = consent_at_x(url)  # the victim, signed in at X, consents
    assert follow_callback(callback, victim) == {
        "tab": "author",
        "x_linked": "false",
        "error": "browser_mismatch",
    }
    assert not SocialLink.objects.exists()
    assert XLinkRequest.objects.get().used_at is None  # nothing spent


def test_a_declined_consent_a_failed_exchange_and_x_down(live_server, x):
    key, browser = Account.create(), requests.Session()

    def sign_in():
        return consent_at_x(start_x(live_server, key, browser=browser).json()["authorization_url"])

    x.deny = True
    declined = sign_in()
    assert "error=access_denied" in declined
    assert follow_callback(declined, browser) == {"tab": "author", "x_linked": "false", "error": "denied"}
    x.deny = False
    tampered = sign_in().replace("code=", "code=x")  # X refuses a code it did not issue
    assert follow_callback(tampered, browser)["error"] == "code_exchange_failed"
    x.inject("503")
    assert follow_callback(sign_in(), browser)["error"] == "x_unavailable"
    callback = sign_in()
    x.stop()  # X unreachable altogether
    assert follow_callback(callback, browser)["error"] == "x_unavailable"
    assert not SocialLink.objects.exists()


def test_the_start_refuses_a_wrong_message_a_foreign_signature_and_an_unconfigured_x(
    live_server, chain, x, settings
):
    """With the chain configured, so that a signature no wallet kind accepts is a plain refusal."""
    key, other = Account.create(), Account.create()
    wrong = start_x(live_server, key, message="Link X account for wallet: 0xsomeoneelse")
    assert wrong.status_code == 400 and "Link X account for wallet:" in wrong.json()["detail"]
    message = f"Link X account for wallet: {key.address}"
    forged = requests.post(
        f"{live_server.url}/api/authors/x/auth/start",
        json={"wallet_address": key.address, "message": message, "signature": sign(other, message)},
        timeout=10,
    )
    assert forged.status_code == 403 and forged.json()["detail"] == "the signature does not match this wallet"
    assert not XLinkRequest.objects.exists()

    settings.GLISK = dataclasses.replace(settings.GLISK, x_client_secret="")
    off = start_x(live_server, key)
    assert off.status_code == 503 and "not configured" in off.json()["detail"]
    assert (
        follow_callback(f"{live_server.url}/api/authors/x/callback?code=a&state=b")["error"]
        == "not_configured"
    )
    settings.GLISK = dataclasses.replace(settings.GLISK, frontend_url="")  # nowhere to send the browser
    callback = requests.get(f"{live_server.url}/api/authors/x/callback?code=a&state=b", timeout=10)
    assert callback.status_code == 503 and "X_CLIENT_SECRET" in callback.json()["detail"]
    assert settings.GLISK.x_client_id not in callback.text


def test_an_x_account_linked_to_a_new_wallet_leaves_the_old_one(live_server, x):
    """Found by its handle, and by its X id (renamed at X since)."""
    by_name = AuthorFactory.create(twitter_handle="Glisk_Artist")
    by_id = AuthorFactory.create(twitter_handle="old_name", x_user_id=x.user["id"])
    key, browser = Account.create(), requests.Session()
    callback = consent_at_x(start_x(live_server, key, browser=browser).json()["authorization_url"])
    assert follow_callback(callback, browser)["x_linked"] == "true"
    for before in (by_name, by_id):
        before.refresh_from_db()
        assert before.twitter_handle == "" and before.x_user_id == ""
        (moved,) = SocialLink.objects.filter(author=before)
        assert moved.action == "unlink" and moved.reason == f"linked to {key.address}"
    assert Author.objects.get(wallet_address=key.address).x_user_id == x.user["id"]


# --- Farcaster --------------------------------------------------------------------------------


@pytest.fixture
def farcaster(live_server, settings, chain, devnet_info):
    names = FnamesStandIn().start()
    settings.GLISK = dataclasses.replace(
        settings.GLISK,
        frontend_url=FRONTEND,
        farcaster_rpc_url=devnet_info.rpc_url,
        farcaster_id_registry=devnet_info.farcaster_id_registry,
        fname_registry_url=names.url,
        social_timeout_seconds=2.0,
    )
    yield names
    names.stop()


def custody_key(chain, registry):
    """A fresh key that registers a fid on the devnet's IdRegistry (as its custody address)."""
    key = Account.create()
    chain.rpc("anvil_setBalance", [key.address, hex(10**18)])
    chain.rpc("anvil_impersonateAccount", [key.address])
    try:
        fid = devnet.register_fid(chain, registry=registry, custody=key.address)
    finally:
        chain.rpc("anvil_stopImpersonatingAccount", [key.address])
    return key, fid


def siwf(address, fid, *, domain="glisk.example", issued=None, expires=None, chain_id=10, nonce="ABCDEFGHJK"):
    """A sign-in message; `expires=False` for one without an expiration time."""
    issued = issued or datetime.now(tz=UTC)
    expires = None if expires is False else expires or issued + timedelta(minutes=10)
    return sign_in_message(
        domain=domain,
        address=address,
        fid=fid,
        issued=issued,
        expires=expires,
        nonce=nonce,
        chain_id=chain_id,
    )


def link(
    live_server, wallet_key, custody, fid, username, *, message=None, signature=None, wallet_message=None
):
    message = message if message is not None else siwf(custody.address, fid)
    wallet_message = wallet_message or f"Link Farcaster account for wallet: {wallet_key.address}"
    return requests.post(
        f"{live_server.url}/api/authors/farcaster/link",
        json={
            "wallet_address": wallet_key.address,
            "wallet_message": wallet_message,
            "wallet_signature": sign(wallet_key, wallet_message),
            "farcaster_message": message,
            "farcaster_signature": signature or sign(custody, message),
            "fid": fid,
            "username": username,
        },
        timeout=10,
    )


def test_linking_a_farcaster_account_with_a_proof_that_holds(live_server, farcaster, chain, devnet_info):
    custody, fid = custody_key(chain, devnet_info.farcaster_id_registry)
    farcaster.register("glisk", fid)
    wallet = Account.create()
    answer = link(live_server, wallet, custody, fid, "Glisk")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"username": "glisk", "fid": fid}
    author = Author.objects.get(wallet_address=wallet.address)
    assert author.farcaster_handle == "glisk"
    (row,) = SocialLink.objects.filter(author=author)
    assert row.network == "farcaster" and row.proof["fid"] == fid
    assert row.proof["custody_address"] == custody.address and row.proof["siwf_domain"] == "glisk.example"
    assert author.farcaster_fid == str(fid)
    assert (
        requests.get(f"{live_server.url}/api/authors/{wallet.address}", timeout=10).json()["farcaster_handle"]
        == "glisk"
    )

    # The same signed message again (captured, replayed): refused, whatever wallet sends it.
    message = siwf(custody.address, fid, nonce="REPLAYED01")
    assert link(live_server, wallet, custody, fid, "glisk", message=message).status_code == 200
    replay = link(live_server, Account.create(), custody, fid, "glisk", message=message)
    assert replay.status_code == 400 and "used already" in replay.json()["detail"]
    assert SocialLink.objects.count() == 2


def test_each_farcaster_check_refuses_with_its_reason(live_server, farcaster, chain, devnet_info):
    registry = devnet_info.farcaster_id_registry
    custody, fid = custody_key(chain, registry)
    other_custody, other_fid = custody_key(chain, registry)
    farcaster.register("glisk", fid)
    farcaster.register("someone", other_fid)
    wallet = Account.create()
    now = datetime.now(tz=UTC)

    def refused(answer, words):
        assert answer.status_code == 400, answer.text
        assert words in answer.json()["detail"], answer.json()["detail"]

    # Signed by a key that is not the fid's custody address (another fid's custody).
    refused(
        link(live_server, wallet, other_custody, fid, "glisk", message=siwf(other_custody.address, fid)),
        f"is not the custody address of fid {fid}",
    )
    # The message names the custody address but someone else signed it.
    refused(
        link(
            live_server,
            wallet,
            custody,
            fid,
            "glisk",
            signature=sign(other_custody, siwf(custody.address, fid)),
        ),
        "not made by the message's address",
    )
    refused(link(live_server, wallet, custody, fid, "someone"), f"belongs to fid {other_fid}, not fid {fid}")
    refused(link(live_server, wallet, custody, fid, "nobody"), "not registered")
    refused(
        link(
            live_server,
            wallet,
            custody,
            fid,
            "glisk",
            message=siwf(custody.address, fid, domain="evil.example"),
        ),
        "is for evil.example, not glisk.example",
    )
    refused(
        link(
            live_server,
            wallet,
            custody,
            fid,
            "glisk",
            message=siwf(
                custody.address, fid, issued=now - timedelta(hours=1), expires=now - timedelta(minutes=1)
            ),
        ),
        "expired",
    )
    refused(
        link(
            live_server,
            wallet,
            custody,
            fid,
            "glisk",
            message=siwf(custody.address, fid, issued=now - timedelta(hours=1), expires=False),
        ),
        "too old",
    )

    def with_message(message):
        return link(live_server, wallet, custody, fid, "glisk", message=message)

    # Issued two years ago, expiring in 2100: a sign-in is fresh or it is not accepted.
    old = siwf(
        custody.address, fid, issued=now - timedelta(days=730), expires=datetime(2100, 1, 1, tzinfo=UTC)
    )
    refused(with_message(old), "too old")
    # A look-alike domain (the Kelvin sign lower-cases to k), a lower-case address, fields out of
    # order, a chain id that int() would read: not EIP-4361.
    for message in (
        siwf(custody.address, fid, domain="glis\u212a.example"),
        siwf(custody.address.lower(), fid),
        siwf(custody.address, fid).replace("Version: 1\nChain ID: 10", "Chain ID: 10\nVersion: 1"),
        siwf(custody.address, fid).replace("Chain ID: 10", "Chain ID: 1_0"),
        siwf(custody.address, fid).replace("Version: 1", "Version: 1\nColour: blue"),
    ):
        refused(with_message(message), "not a Sign In With Farcaster")
    refused(
        link(live_server, wallet, custody, fid, "glisk", message=siwf(custody.address, other_fid)),
        f"names farcaster://fid/{other_fid}, not (only) fid {fid}",
    )
    two = siwf(custody.address, fid) + f"\n- farcaster://fid/{other_fid}"
    refused(with_message(two), f"names farcaster://fid/{other_fid}, not (only) fid {fid}")
    refused(link(live_server, wallet, custody, fid, "glisk", message="hello"), "not a Sign In With Farcaster")
    refused(
        link(
            live_server, wallet, custody, fid, "glisk", wallet_message="Link Farcaster account for wallet: me"
        ),
        "message must be exactly",
    )
    unregistered = Account.create()
    refused(
        link(
            live_server, wallet, unregistered, 999_999, "glisk", message=siwf(unregistered.address, 999_999)
        ),
        "fid 999999 is not registered",
    )
    assert not SocialLink.objects.exists()
    assert Author.objects.filter(farcaster_handle__gt="").count() == 0


def test_farcaster_services_down_or_not_configured_answer_503(
    live_server, farcaster, chain, devnet_info, settings
):
    custody, fid = custody_key(chain, devnet_info.farcaster_id_registry)
    farcaster.register("glisk", fid)
    wallet = Account.create()
    farcaster.inject("503")
    down = link(live_server, wallet, custody, fid, "glisk")
    assert down.status_code == 503 and "name registry" in down.json()["detail"]

    settings.GLISK = dataclasses.replace(
        settings.GLISK, farcaster_rpc_url="http://127.0.0.1:9/rpc-with-key-s3cr3t"
    )
    down = link(live_server, wallet, custody, fid, "glisk")
    assert down.status_code == 503 and "s3cr3t" not in down.text

    settings.GLISK = dataclasses.replace(settings.GLISK, farcaster_rpc_url="")
    off = link(live_server, wallet, custody, fid, "glisk")
    assert off.status_code == 503 and "not configured" in off.json()["detail"]
    assert not SocialLink.objects.exists()


def test_one_account_linked_to_two_wallets_at_once_ends_on_one():
    """Links of one account are serialized: whichever comes second takes it from the first."""
    import threading

    from django.db import connection

    from authors.social import author_social_link

    wallets = [Account.create().address for _ in range(6)]
    barrier = threading.Barrier(len(wallets))
    errors: list[BaseException] = []

    def link_from(wallet):
        try:
            barrier.wait()
            author_social_link(
                wallet=wallet,
                network="x",
                account_id="42",
                handle="same_account",
                proof={},
                wallet_proof="static",
            )
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=link_from, args=(w,)) for w in wallets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    holders = list(Author.objects.filter(x_user_id="42").values_list("twitter_handle", flat=True))
    assert holders == ["same_account"]
    assert Author.objects.filter(twitter_handle="same_account").count() == 1
    assert SocialLink.objects.filter(action="link").count() == 6
    assert SocialLink.objects.filter(action="unlink").count() == 5


# --- Replays of the static wallet messages ---------------------------------------------------


def bound_link(live_server, wallet: str, network: str) -> str:
    """The bound link message for `wallet`, as the nonce endpoint gives it."""
    answer = requests.get(f"{live_server.url}/api/authors/{wallet}/nonce", timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["link_messages"][network]


def metadata_traits(wallet: str) -> dict[str, str]:
    from lifecycle.services.stages import token_metadata
    from tests.factories import TokenFactory

    token = TokenFactory.create(author=Author.objects.get(wallet_address=wallet))
    return {a["trait_type"]: a["value"] for a in token_metadata(token=token, image_cid="bafkx")["attributes"]}


def test_a_replayed_static_x_link_never_reaches_pinned_metadata(live_server, x):
    """Defect: replaying a captured `Link X account for wallet: …` signature linked the
    replayer's X account and pinned it into the victim's token metadata for good."""
    victim = Account.create()
    captured = f"Link X account for wallet: {victim.address}"
    replay = {"wallet_address": victim.address, "message": captured, "signature": sign(victim, captured)}

    def replayed(browser):
        started = browser.post(f"{live_server.url}/api/authors/x/auth/start", json=replay, timeout=10)
        assert started.status_code == 200, started.text
        return consent_at_x(started.json()["authorization_url"])

    attacker = requests.Session()
    x.user.update(id="666", username="attacker_x")
    assert follow_callback(replayed(attacker), attacker)["x_linked"] == "true"
    author = Author.objects.get(wallet_address=victim.address)
    assert author.twitter_handle == "attacker_x" and not author.twitter_verified  # the profile only
    assert "Twitter" not in metadata_traits(victim.address)
    assert SocialLink.objects.get(handle="attacker_x").wallet_proof == "static"

    # The owner links with the bound message: verified, pinned.
    late = replayed(attacker)  # a replay started before the owner's link, finished after it
    x.user.update(id="1500000000000000001", username="glisk_artist")
    owner = requests.Session()
    started = start_x(
        live_server, victim, browser=owner, message=bound_link(live_server, victim.address, "x")
    )
    assert started.status_code == 200, started.text
    assert follow_callback(consent_at_x(started.json()["authorization_url"]), owner)["x_linked"] == "true"
    author.refresh_from_db()
    assert (author.twitter_handle, author.twitter_verified) == ("glisk_artist", True)
    assert metadata_traits(victim.address)["Twitter"] == "glisk_artist"

    # From now on the static message changes nothing: refused at the start, and at the callback
    # of a sign-in started before (under the author's lock).
    again = requests.post(f"{live_server.url}/api/authors/x/auth/start", json=replay, timeout=10)
    assert again.status_code == 400 and "bound link message" in again.json()["detail"]
    x.user.update(id="666", username="attacker_x")
    refused = follow_callback(late, attacker)
    assert refused["x_linked"] == "false" and "bound" in refused["error"]
    author.refresh_from_db()
    assert (author.twitter_handle, author.twitter_verified) == ("glisk_artist", True)
    assert SocialLink.objects.filter(author=author).count() == 2


def test_the_bound_link_message_is_checked_and_used_once(live_server, x, settings):
    key = Account.create()
    message = bound_link(live_server, key.address, "x")
    assert message.startswith(f"GLISK account link\nWallet: {key.address}\nNetwork: X\nChain ID: ")

    def refused(text, words):
        answer = start_x(live_server, key, message=text)
        assert answer.status_code == 400 and words in answer.json()["detail"], answer.text

    other = Account.create().address
    refused(message.replace(key.address, other), "names another wallet")
    refused(message.replace("Network: X", "Network: Farcaster"), "links another network")
    refused(message.replace("Network: X", "Network: Lens"), "links another network")
    chain = f"Chain ID: {settings.GLISK.chain_id}"
    refused(message.replace(chain, "Chain ID: 8453000"), "is for chain 8453000")
    for odd in ("Chain ID: \u00b2", "Chain ID: 1_0", "Chain ID: " + "9" * 5000):
        refused(message.replace(chain, odd), "must be exactly")
    refused(message.replace("Expires At: 2", "Expires At: 1"), "expired")
    refused(bound_link(live_server, other, "x"), "names another wallet")  # another wallet's nonce
    spoofed = message.replace(message.split("Nonce: ")[1].split("\n")[0], "0" * 32)
    refused(spoofed, "nonce is unknown")

    assert start_x(live_server, key, message=message).status_code == 200
    refused(message, "nonce is unknown, expired or already used")  # the same signature again
    assert XLinkRequest.objects.get().wallet_proof == "bound"

    settings.GLISK = dataclasses.replace(settings.GLISK, author_accept_static_message=False)
    refused(f"Link X account for wallet: {key.address}", "static message is not accepted")


def test_a_farcaster_link_is_pinned_when_the_wallet_proved_it(live_server, farcaster, chain, devnet_info):
    """Custody address == wallet proves the link whatever the wallet message; a foreign custody
    with the static message does not; the bound message does; a static replay never replaces
    a proven link."""
    registry = devnet_info.farcaster_id_registry
    own, own_fid = custody_key(chain, registry)
    foreign, foreign_fid = custody_key(chain, registry)
    farcaster.register("owner", own_fid)
    farcaster.register("attacker", foreign_fid)

    # The attacker replays the wallet's static message with their own fid: shown, not pinned.
    assert link(live_server, own, foreign, foreign_fid, "attacker").status_code == 200
    author = Author.objects.get(wallet_address=own.address)
    assert (author.farcaster_handle, author.farcaster_verified) == ("attacker", False)
    assert "Farcaster" not in metadata_traits(own.address)

    # The wallet is its fid's custody address: proven by the sign-in itself.
    assert link(live_server, own, own, own_fid, "owner").status_code == 200
    author.refresh_from_db()
    assert (author.farcaster_handle, author.farcaster_verified) == ("owner", True)
    assert SocialLink.objects.filter(author=author).first().wallet_proof == "custody"
    assert metadata_traits(own.address)["Farcaster"] == "owner"

    replay = link(
        live_server,
        own,
        foreign,
        foreign_fid,
        "attacker",
        message=siwf(foreign.address, foreign_fid, nonce="AGAIN0001"),
    )
    assert replay.status_code == 400 and "bound link message" in replay.json()["detail"]
    author.refresh_from_db()
    assert author.farcaster_handle == "owner"

    # Another wallet links the foreign fid with the bound message: proven, pinned.
    wallet = Account.create()
    bound = bound_link(live_server, wallet.address, "farcaster")
    answer = link(
        live_server,
        wallet,
        foreign,
        foreign_fid,
        "attacker",
        wallet_message=bound,
        message=siwf(foreign.address, foreign_fid, nonce="BOUND0001"),
    )
    assert answer.status_code == 200, answer.text
    assert Author.objects.get(wallet_address=wallet.address).farcaster_verified
    again = link(
        live_server,
        wallet,
        foreign,
        foreign_fid,
        "attacker",
        wallet_message=bound,
        message=siwf(foreign.address, foreign_fid, nonce="BOUND0002"),
    )
    assert again.status_code == 400 and "nonce is unknown" in again.json()["detail"]


def test_an_unlink_or_a_move_leaves_no_verified_flag_behind():
    from authors.social import author_social_link, author_social_unlink

    first, second = Account.create().address, Account.create().address
    author_social_link(
        wallet=first, network="x", account_id="7", handle="seven", proof={}, wallet_proof="bound"
    )
    assert Author.objects.get(wallet_address=first).twitter_verified
    author_social_link(
        wallet=second, network="x", account_id="7", handle="seven", proof={}, wallet_proof="static"
    )
    moved = Author.objects.get(wallet_address=first)
    assert (moved.twitter_handle, moved.twitter_verified) == ("", False)
    assert not Author.objects.get(wallet_address=second).twitter_verified
    author_social_link(
        wallet=second, network="x", account_id="7", handle="seven", proof={}, wallet_proof="bound"
    )
    holder = Author.objects.get(wallet_address=second)
    assert holder.twitter_verified
    assert author_social_unlink(author_id=holder.pk, network="x", operator="ops", reason="abuse")
    holder.refresh_from_db()
    assert (holder.twitter_handle, holder.twitter_verified) == ("", False)


def test_a_stale_name_never_takes_a_verified_link_and_a_proven_wallet_stays_proven():
    """Found by review: the victim renamed at X, and someone else's account took the old name; its
    owner linking it (legitimately, to their own wallet) cleared the victim's account and proof,
    and the victim's captured static signature worked again. Also after an operator's unlink."""
    from authors.social import LinkRefused, author_social_link, author_social_unlink

    victim, other = Account.create().address, Account.create().address
    author_social_link(
        wallet=victim, network="x", account_id="7", handle="vic", proof={}, wallet_proof="bound"
    )
    author_social_link(
        wallet=other, network="x", account_id="666", handle="vic", proof={}, wallet_proof="static"
    )
    kept = Author.objects.get(wallet_address=victim)
    assert (kept.twitter_handle, kept.x_user_id, kept.twitter_verified) == ("", "7", True)
    assert "is another account's now" in SocialLink.objects.filter(author=kept).first().reason
    with pytest.raises(LinkRefused, match="bound message"):
        author_social_link(
            wallet=victim, network="x", account_id="9", handle="x9", proof={}, wallet_proof="static"
        )

    assert author_social_unlink(author_id=kept.pk, network="x", operator="ops", reason="report #3")
    with pytest.raises(LinkRefused, match="bound message"):
        author_social_link(
            wallet=victim, network="x", account_id="9", handle="x9", proof={}, wallet_proof="static"
        )
    author_social_link(
        wallet=victim, network="x", account_id="7", handle="vic2", proof={}, wallet_proof="bound"
    )
    assert Author.objects.get(wallet_address=victim).twitter_verified
