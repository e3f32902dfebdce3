"""The facility's money journal: immutable, balanced double-entry postings (pure).

Accounts, one set per facility (debit positive in `Balances`):

    principal             asset   the borrower's outstanding principal
    interest_receivable   asset   interest accrued and not yet paid
    fees_receivable       asset   fees charged and not yet paid
    cash                  asset   the lender's funding/settlement account (negative after lending)
    interest_income       income  interest earned (credit-normal, so negative in `Balances`)
    fee_income            income  fees earned (credit-normal, so negative in `Balances`)

What the builders book:

    drawdown          Dr principal              Cr cash
    interest_accrual  Dr interest_receivable    Cr interest_income
    fee               Dr fees_receivable        Cr fee_income
    repayment         Dr cash                   Cr interest_receivable, fees_receivable, principal
                                                   (split by `allocate_repayment`: interest first)

Invariants, checked when a `Posting` is built: every line carries exactly one strictly positive
amount (debit or credit) that is a Decimal already at the currency's minor unit; debits equal
credits; all lines are in the posting's currency; `at` is timezone-aware. So every stored posting
balances, the sum of all balances is always zero, and `Balances` is a pure fold over postings
(`Balances.from_postings` re-derives what `apply` built incrementally).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Literal, get_args

from ledger.core.errors import (
    CurrencyMismatch,
    InvalidAmount,
    InvalidInput,
    LedgerError,
)
from ledger.core.money import minor_unit, quantize_money, require_positive, to_decimal
from ledger.core.reference import check_currency
from ledger.core.repayment import Allocation, Owed, allocate_repayment

__all__ = [
    "ACCOUNTS",
    "POSTING_KINDS",
    "Account",
    "Balances",
    "Posting",
    "PostingKind",
    "PostingLine",
    "UnbalancedPosting",
    "UnknownAccount",
    "WrongFacility",
    "allocation_of",
    "check_aware",
    "check_currency",
    "drawdown_posting",
    "fee_posting",
    "interest_accrual_posting",
    "repayment_postings",
]

ZERO = Decimal(0)

Account = Literal[
    "principal",
    "interest_receivable",
    "fees_receivable",
    "cash",
    "interest_income",
    "fee_income",
]
ACCOUNTS: tuple[str, ...] = get_args(Account)

PostingKind = Literal["drawdown", "repayment", "interest_accrual", "fee"]
POSTING_KINDS: tuple[str, ...] = get_args(PostingKind)


class UnbalancedPosting(LedgerError):
    """A posting whose debits and credits differ: a bug in whoever built it, never booked."""

    code = "unbalanced_posting"

    def __init__(self, posting_id: str, debits: Decimal, credits: Decimal) -> None:
        super().__init__(
            f"posting {posting_id!r} does not balance: debits {debits} != credits {credits}",
            posting_id=posting_id,
            debits=str(debits),
            credits=str(credits),
        )
        self.posting_id = posting_id
        self.debits = debits
        self.credits = credits


class UnknownAccount(InvalidInput):
    """A posting line names an account outside `ACCOUNTS`."""

    code = "unknown_account"

    def __init__(self, account: str) -> None:
        super().__init__(f"unknown account {account!r}; expected one of {ACCOUNTS}", account=account)
        self.account = account


class WrongFacility(InvalidInput):
    """A posting of one facility was folded into the balances of another."""

    code = "wrong_facility"

    def __init__(self, expected: str, got: str) -> None:
        super().__init__(
            f"posting of facility {got!r} applied to the balances of facility {expected!r}",
            expected=expected,
            got=got,
        )
        self.expected = expected
        self.got = got


def check_aware(name: str, value: datetime) -> datetime:
    """Refuse naive datetimes: a posting time without an offset cannot be ordered safely."""
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise InvalidInput(f"{name} must be a timezone-aware datetime (got {value!r})")
    return value


def _booked(amount: object, currency: str, field_name: str) -> Decimal:
    """A caller-given amount: a Decimal > 0 with no more decimals than the currency's minor unit.

    Drawdowns and repayments are what the borrower asked for; rounding them silently would pay
    or take a different amount than requested, so excess precision is refused, not rounded.
    """
    value = require_positive(to_decimal(amount, field=field_name), field=field_name)
    if quantize_money(value, currency) != value:
        raise InvalidAmount(
            field_name, value, f"has more than {minor_unit(currency)} decimals for {currency}"
        )
    return value


def _rounded(amount: object, currency: str, field_name: str) -> Decimal:
    """A computed amount (interest, fee): rounded half-even to the minor unit, then > 0."""
    value = quantize_money(to_decimal(amount, field=field_name), currency)
    return require_positive(value, field=field_name)


@dataclass(frozen=True, slots=True)
class PostingLine:
    """One side of a posting: exactly one of `debit`/`credit` is > 0, the other is 0.

    Amounts are in the posting's currency. `currency` may be given to state the line's own
    currency; a posting refuses a line whose currency differs from its own.
    """

    account: str
    debit: Decimal = ZERO
    credit: Decimal = ZERO
    currency: str | None = None

    def __post_init__(self) -> None:
        if self.account not in ACCOUNTS:
            raise UnknownAccount(self.account)
        debit = to_decimal(self.debit, field=f"{self.account}.debit")
        credit = to_decimal(self.credit, field=f"{self.account}.credit")
        if debit < 0 or credit < 0:
            raise InvalidAmount(self.account, (debit, credit), "must not carry a negative amount")
        if (debit > 0) == (credit > 0):
            raise InvalidAmount(self.account, (debit, credit), "must carry exactly one positive amount")
        object.__setattr__(self, "debit", debit)
        object.__setattr__(self, "credit", credit)

    @property
    def signed(self) -> Decimal:
        """Effect on the account's balance, debit positive."""
        return self.debit - self.credit

    @property
    def amount(self) -> Decimal:
        """The line's positive amount, whichever side it is on."""
        return self.debit or self.credit


@dataclass(frozen=True, slots=True)
class Posting:
    """An immutable, balanced journal entry of one facility.

    `at` is the effective time (timezone-aware); `idempotency_key` is the client's key for
    the request that produced the posting (storage enforces uniqueness, not this class).
    """

    posting_id: str
    facility_id: str
    at: datetime
    kind: PostingKind
    lines: tuple[PostingLine, ...]
    currency: str
    memo: str = ""
    idempotency_key: str | None = None

    def __post_init__(self) -> None:
        if not self.posting_id or not self.facility_id:
            raise InvalidInput("posting_id and facility_id must not be empty")
        check_aware("at", self.at)
        check_currency(self.currency)
        if self.kind not in POSTING_KINDS:
            raise InvalidInput(f"unknown posting kind {self.kind!r}", kind=self.kind)
        object.__setattr__(self, "lines", tuple(self.lines))
        if not self.lines:
            raise InvalidInput(f"posting {self.posting_id!r} has no lines")
        for line in self.lines:
            self._check_line(line)
        if self.total_debits != self.total_credits:
            raise UnbalancedPosting(self.posting_id, self.total_debits, self.total_credits)

    def _check_line(self, line: PostingLine) -> None:
        if not isinstance(line, PostingLine):
            raise InvalidInput(f"posting {self.posting_id!r} has a line that is not a PostingLine")
        if line.currency is not None and line.currency != self.currency:
            raise CurrencyMismatch(self.currency, line.currency, f"posting {self.posting_id}")
        if quantize_money(line.amount, self.currency) != line.amount:
            raise InvalidAmount(
                line.account,
                line.amount,
                f"has more than {minor_unit(self.currency)} decimals for {self.currency}",
            )

    @property
    def total_debits(self) -> Decimal:
        return sum((line.debit for line in self.lines), ZERO)

    @property
    def total_credits(self) -> Decimal:
        return sum((line.credit for line in self.lines), ZERO)

    @property
    def amount(self) -> Decimal:
        """The posting's size: its total debits (equal to its total credits)."""
        return self.total_debits

    def effect(self, account: str) -> Decimal:
        """Net signed effect of this posting on `account` (debit positive)."""
        if account not in ACCOUNTS:
            raise UnknownAccount(account)
        return sum((line.signed for line in self.lines if line.account == account), ZERO)


def _pair(debit: Account, credit: Account, amount: Decimal) -> tuple[PostingLine, ...]:
    return (PostingLine(debit, debit=amount), PostingLine(credit, credit=amount))


def drawdown_posting(
    posting_id: str,
    facility_id: str,
    at: datetime,
    amount: Decimal,
    currency: str,
    *,
    memo: str = "",
    idempotency_key: str | None = None,
) -> Posting:
    """Lend `amount` (currency units, > 0, at the minor unit): Dr principal, Cr cash.

    Availability, freeze and activity are checked by `credit_line.check_drawdown` first.
    """
    lines = _pair("principal", "cash", _booked(amount, check_currency(currency), "drawdown amount"))
    return Posting(posting_id, facility_id, at, "drawdown", lines, currency, memo, idempotency_key)


def interest_accrual_posting(
    posting_id: str,
    facility_id: str,
    at: datetime,
    amount: Decimal,
    currency: str,
    *,
    memo: str = "",
    idempotency_key: str | None = None,
) -> Posting:
    """Book accrued interest: Dr interest_receivable, Cr interest_income.

    `amount` (currency units) is rounded half-even to the minor unit; it must be > 0 after
    rounding, so callers skip zero-interest days (see `interest.accrue`).
    """
    value = _rounded(amount, check_currency(currency), "interest amount")
    lines = _pair("interest_receivable", "interest_income", value)
    return Posting(posting_id, facility_id, at, "interest_accrual", lines, currency, memo, idempotency_key)


def fee_posting(
    posting_id: str,
    facility_id: str,
    at: datetime,
    amount: Decimal,
    currency: str,
    *,
    memo: str = "",
    idempotency_key: str | None = None,
) -> Posting:
    """Charge a fee: Dr fees_receivable, Cr fee_income; `amount` rounded half-even, > 0."""
    value = _rounded(amount, check_currency(currency), "fee amount")
    lines = _pair("fees_receivable", "fee_income", value)
    return Posting(posting_id, facility_id, at, "fee", lines, currency, memo, idempotency_key)


def repayment_postings(
    posting_id: str,
    facility_id: str,
    at: datetime,
    amount: Decimal,
    owed: Owed,
    currency: str,
    *,
    memo: str = "",
    idempotency_key: str | None = None,
) -> tuple[Posting, ...]:
    """Book a repayment of `amount` (currency units, > 0, at the minor unit, <= owed.total).

    The amount is split by `allocate_repayment` (interest, then fees, then principal) and booked
    as ONE compound posting: Dr cash amount; Cr interest_receivable / fees_receivable /
    principal for each non-zero part. One posting keeps the cash receipt atomic and its
    idempotency key unique; the tuple leaves room for splitting later without changing callers.
    Raises Overpayment (with the exact amount owed) and InvalidAmount like `allocate_repayment`.
    """
    value = _booked(amount, check_currency(currency), "repayment amount")
    split = allocate_repayment(value, owed, currency, facility_id=facility_id)
    credits = [
        PostingLine(account, credit=part)
        for account, part in (
            ("interest_receivable", split.interest),
            ("fees_receivable", split.fees),
            ("principal", split.principal),
        )
        if part > 0
    ]
    lines = (PostingLine("cash", debit=value), *credits)
    kind: PostingKind = "repayment"
    return (Posting(posting_id, facility_id, at, kind, lines, currency, memo, idempotency_key),)


def allocation_of(posting: Posting) -> Allocation:
    """How a repayment posting was split: amounts credited to each receivable."""
    if posting.kind != "repayment":
        raise InvalidInput(f"posting {posting.posting_id!r} is a {posting.kind}, not a repayment")
    return Allocation(
        interest=-posting.effect("interest_receivable"),
        fees=-posting.effect("fees_receivable"),
        principal=-posting.effect("principal"),
    )


def _zero_amounts() -> Mapping[str, Decimal]:
    return MappingProxyType(dict.fromkeys(ACCOUNTS, ZERO))


@dataclass(frozen=True, slots=True)
class Balances:
    """Signed balance per account (debit positive) of ONE facility in ONE currency.

    `currency` and `facility_id` are None until the first posting is applied (or fixed up
    front); a posting of another currency raises CurrencyMismatch, of another facility
    WrongFacility. Invariant: the sum over all accounts is zero (every posting balances).
    """

    currency: str | None = None
    facility_id: str | None = None
    amounts: Mapping[str, Decimal] = field(default_factory=_zero_amounts)

    def __hash__(self) -> int:
        return hash((self.currency, self.facility_id, tuple(sorted(self.amounts.items()))))

    def apply(self, posting: Posting) -> Balances:
        """The balances after `posting`; `self` is unchanged."""
        if self.currency is not None and posting.currency != self.currency:
            raise CurrencyMismatch(self.currency, posting.currency, f"posting {posting.posting_id}")
        if self.facility_id is not None and posting.facility_id != self.facility_id:
            raise WrongFacility(self.facility_id, posting.facility_id)
        amounts = dict(self.amounts)
        for line in posting.lines:
            amounts[line.account] = amounts.get(line.account, ZERO) + line.signed
        return Balances(posting.currency, posting.facility_id, MappingProxyType(amounts))

    @classmethod
    def from_postings(
        cls,
        postings: Iterable[Posting],
        *,
        currency: str | None = None,
        facility_id: str | None = None,
    ) -> Balances:
        """Fold `postings` (in any order: addition commutes) from zero balances."""
        balances = cls(currency, facility_id)
        for posting in postings:
            balances = balances.apply(posting)
        return balances

    def __getitem__(self, account: str) -> Decimal:
        if account not in ACCOUNTS:
            raise UnknownAccount(account)
        return self.amounts.get(account, ZERO)

    @property
    def principal(self) -> Decimal:
        """Outstanding principal (currency units)."""
        return self["principal"]

    @property
    def interest_receivable(self) -> Decimal:
        """Accrued, unpaid interest (currency units)."""
        return self["interest_receivable"]

    @property
    def fees_receivable(self) -> Decimal:
        """Charged, unpaid fees (currency units)."""
        return self["fees_receivable"]

    @property
    def total_owed(self) -> Decimal:
        """Principal + interest receivable + fees receivable (currency units)."""
        return self.principal + self.interest_receivable + self.fees_receivable

    @property
    def owed(self) -> Owed:
        """What the borrower owes, in the shape `allocate_repayment` takes."""
        return Owed(interest=self.interest_receivable, fees=self.fees_receivable, principal=self.principal)
