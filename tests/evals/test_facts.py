"""The eval set's facts on other wordings: right answers in other words pass, wrong answers sharing words fail."""

import pytest

from evals.dataset import Question, load_questions
from evals.scoring import states_facts
from ragft.settings import REPO


@pytest.fixture(scope="module")
def questions() -> dict[str, Question]:
    return {q.id: q for q in load_questions(REPO / "data" / "kb_questions.jsonl")}


@pytest.mark.parametrize(
    ("question_id", "answer", "expected"),
    [
        # Yes/no questions: the answer must carry the right polarity.
        ("h011", "You don't need to enter a credit card or any other payment method.", True),
        ("h011", "You can't start the trial without a credit card.", False),
        ("h068", "No, the browser version requires an internet connection.", True),
        ("h068", "Yes, the web app doesn't need an internet connection.", False),
        ("h025", "No, they don't count toward your quota.", True),
        ("h025", "Old versions count toward storage; only deleted files are excluded.", False),
        ("h050", "It isn't available on the Free plan; you need Team or higher.", True),
        ("h050", "Yes, on every plan: Free, Team, Business and Enterprise.", False),
        ("h082", "No, the Admin Console is only available in the web app.", True),
        ("h082", "Yes, in the desktop app or the web.", False),
        ("h066", "No, creating templates requires the desktop or web app.", True),
        ("h066", "Yes, just like the desktop app.", False),
        ("h019", "Not immediately - the seat count drops when your annual plan renews.", True),
        ("h019", "Immediately, prorated until renewal.", False),
        ("h046", "No. Only workspace admins can install integrations on Business.", True),
        ("h046", "Yes, any member can; admins review requests.", False),
        # Numbers: tied to their unit or subject, whole amounts only.
        ("h009", "€17 per seat per month", True),
        ("h009", "€17.50 per seat per month", False),
        ("h092", "Tables support up to 50 columns.", True),
        ("h092", "50 rows and 20 columns", False),
        ("h039", "The default limit is 50 items per page.", True),
        ("h039", "The default is 20; the maximum is 50.", False),
        ("h048", "Up to 25 members", False),
        ("h077", "A Team workspace can store up to 100 signing templates.", True),
        ("h077", "100 MB", False),
        ("h078", "500 MB", False),
        ("h083", "You can paste up to 50 addresses into one invite.", True),
        ("h083", "50 MB", False),
        ("h093", "The cap used to be 200.", True),
        ("h093", "500 recipients", False),
        ("h054", "60 requests per minute", False),
        ("t014", "Team: 300 req/min per token", True),
        ("t014", "Team gets 300 requests per hour.", False),
        ("h012", "Up to 25 team members.", True),
        ("h014", "Up to three contacts.", True),
        ("h085", "100 000 events", True),
        ("h004", "It's good for an hour.", True),
        ("t024", "AES 256", True),
        ("h099", "99.95 percent", True),
        ("h100", "Half of your monthly fee.", True),
        # Dates in other orders, and lists of days across sentences.
        ("h043", "September 30th, 2026", True),
        ("h044", "The 7th of January, 2026", True),
        ("h095", "April 14th, 2026", True),
        ("t038", "The 24th of March, 2026", True),
        ("h022", "It retries on day 3. Then day 7 and day 12.", True),
        ("h022", "1. Day 1 2. Day 7 3. Day 12", False),
    ],
)
def test_facts_accept_right_wordings_and_reject_wrong_answers(
    questions: dict[str, Question], question_id: str, answer: str, expected: bool
) -> None:
    assert states_facts(questions[question_id], answer) is expected
