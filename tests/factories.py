"""factory-boy factories for the models (real rows in the real test database)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import factory
from eth_utils import to_checksum_address

from authors.models import Author
from chain.models import MintEvent, RevealTransaction, WebhookDelivery
from lifecycle.models import Token, TokenStatus


def random_address() -> str:
    return to_checksum_address("0x" + secrets.token_hex(20))


def random_hash() -> str:
    return "0x" + secrets.token_hex(32)


class AuthorFactory(factory.django.DjangoModelFactory[Author]):
    class Meta:
        model = Author

    wallet_address = factory.LazyFunction(random_address)
    prompt_text = factory.Sequence(lambda n: f"A glowing crystal garden, variation {n}")


class MintEventFactory(factory.django.DjangoModelFactory[MintEvent]):
    class Meta:
        model = MintEvent

    chain_id = 31337
    tx_hash = factory.LazyFunction(random_hash)
    log_index = 0
    block_number = factory.Sequence(lambda n: 100 + n)
    block_hash = factory.LazyFunction(random_hash)
    block_timestamp = factory.LazyFunction(lambda: datetime(2026, 1, 1, tzinfo=UTC))
    minter = factory.LazyFunction(random_address)
    author = factory.SubFactory(AuthorFactory)
    prompt_author = factory.SelfAttribute("author.wallet_address")
    start_token_id = factory.Sequence(lambda n: 1000 + n * 50)
    quantity = 1
    total_paid_wei = 10**15
    source = MintEvent.Source.WEBHOOK


class TokenFactory(factory.django.DjangoModelFactory[Token]):
    class Meta:
        model = Token

    token_id = factory.Sequence(lambda n: n + 1)
    author = factory.SubFactory(AuthorFactory)
    status = TokenStatus.DETECTED


class WebhookDeliveryFactory(factory.django.DjangoModelFactory[WebhookDelivery]):
    class Meta:
        model = WebhookDelivery

    body = b"{}"
    headers = factory.LazyFunction(dict)


class RevealTransactionFactory(factory.django.DjangoModelFactory[RevealTransaction]):
    class Meta:
        model = RevealTransaction

    chain_id = 31337
    keeper_address = factory.LazyFunction(random_address)
    nonce = factory.Sequence(lambda n: n)
    token_ids = factory.LazyFunction(lambda: [1])
    raw_tx = b"\x02"
    tx_hash = factory.LazyFunction(random_hash)
    max_fee_per_gas_wei = 2 * 10**9
    max_priority_fee_per_gas_wei = 10**6
    gas_limit = 150_000
