"""Synthetic customer-support tickets for a SaaS / e-commerce company, labelled for routing.

Everything here is synthetic: templates + slot fillers + a seeded RNG. No real customers, orders or
companies are involved. The task is built so that the label is decided by the *main* intent of the
ticket: many tickets also mention another category in passing (a refund inside a cancellation, the
login page inside a billing complaint), so keyword matching and zero-shot prompting of a tiny model
get a fair number wrong, while a fine-tuned model can learn which sentence carries the intent.

Each record: ``{"id", "text", "label", "urgency"}`` with ``label`` in :data:`CATEGORIES` and
``urgency`` in :data:`URGENCIES`; urgency follows the wording ("ASAP", "production down",
"whenever you get a chance").
"""

from __future__ import annotations

import random
from typing import Any

CATEGORIES: list[str] = [
    "billing",
    "technical_issue",
    "account_access",
    "shipping",
    "refund_request",
    "cancellation",
    "feature_request",
    "security",
]
URGENCIES: list[str] = ["low", "medium", "high"]

# The sentence that carries the intent. Each category has >= 15 so a model cannot memorise a
# handful of phrasings; several deliberately contain another category's vocabulary.
_CORE: dict[str, list[str]] = {
    "billing": [
        "I was charged {amount} on {date} but my plan is supposed to be {amount2} a month.",
        "Why did my card ending in {last4} get charged twice this month?",
        "Can you send me a copy of the invoice for {date}? Our accounting team needs it.",
        "My payment keeps failing when I try to renew the {plan}, even though the card is valid.",
        "How do I update the credit card on file? The old one ending in {last4} expired.",
        "The invoice shows {seats} seats but we only have {seats2} people on the team.",
        "Please add our VAT number to the invoices, it is missing on all of them.",
        "There is a charge of {amount} from you on my statement and I can't tell what it is for.",
        "I upgraded to the {plan} on {date} and was billed the full price instead of a prorated amount.",
        "Is it possible to switch from monthly to annual billing and pay by bank transfer?",
        "The company address on our receipts is wrong, can you change it to our {city} office?",
        "The discount code {code} was not applied to my last bill of {amount}.",
        "We were promised the nonprofit discount but the latest invoice is still {amount}.",
        "Could you explain the 'usage overage' line on my latest invoice? It added {amount}.",
        "My bank says the payment of {amount} went through but your system still shows the account as unpaid.",
        "I need the billing email changed to {email} so invoices go straight to our finance team.",
        "Sales tax was added to my order even though we are tax exempt, where do I send the certificate?",
        "Your pricing page says {amount2} but I'm being billed {amount} for the same plan.",
        "The login page showed a banner that my payment failed, but the card was charged {amount} anyway.",
        "Which payment methods do you accept for the {plan}? Our card limit is too low for the annual price.",
    ],
    "technical_issue": [
        "The {module} won't load, it just shows a spinner forever in {browser}.",
        "I keep getting error {error} when I try to export my data.",
        "The app crashes every time I open it on my {device}.",
        "Since the last update, syncing with {integration} stopped working.",
        "Uploading files larger than {size} MB fails with {error}.",
        "Our API calls have been returning 500 errors since {date}.",
        "Notifications aren't being sent anymore, nobody on my team got today's alerts.",
        "The {module} is extremely slow, pages take over {secs} seconds to load.",
        "The checkout button does nothing when I click it in {browser}.",
        "Charts on the {module} show no data even though we imported everything yesterday.",
        "After updating my {device}, the app logs me in but then shows a blank white screen.",
        "The CSV import keeps timing out at about {pct}% with {error}.",
        "Search returns no results, even for items I know are there.",
        "The webhook to our endpoint fires twice for every single event.",
        "Emails sent from the app arrive with broken formatting and missing images.",
        "Dark mode makes the text in the {module} unreadable, it's black on black.",
        "PDF reports come out empty since {date}; the preview looks fine but the download is 0 KB.",
        "The mobile app on my {device} freezes whenever I switch between tabs.",
        "Every time I save changes in the {module} I get {error} and my edits are lost.",
        "The {integration} integration shows 'connected' but no records have come through since {date}.",
    ],
    "account_access": [
        "I can't log in, it says my password is incorrect even right after I reset it.",
        "I never receive the password reset email at {email}.",
        "My account got locked after too many login attempts, please unlock it.",
        "I lost my phone and can't get the two-factor code anymore, how do I get back in?",
        "Single sign-on through {sso} no longer lets me into our workspace.",
        "I need to change the login email on my account from {email} to my new work address.",
        "The verification link in the sign-up email says it has expired.",
        "I'm the workspace admin but I was removed by mistake and can't get back in.",
        "The sign-in page says my username doesn't exist. Was my account deleted?",
        "I left my old company and need to move my account to a personal email so I don't lose access.",
        "The login page keeps sending me back to itself after I enter my credentials.",
        "Please help me recover my account, I forgot which email address I signed up with.",
        "I got a new phone and the authenticator app codes are rejected now.",
        "Our new hire never got the invitation email to join the team account.",
        "It says 'account suspended' when I try to sign in and I have no idea why.",
        "I can't reset my password because the security questions don't match what I remember.",
        "The magic sign-in link opens but then says the session is invalid.",
        "I'm stuck in a loop: it asks for the 2FA code, I enter it, and it asks again.",
    ],
    "shipping": [
        "Where is my order {order}? It was supposed to arrive on {date}.",
        "Tracking for order {order} hasn't updated in {days} days.",
        "{carrier} tracking {tracking} says delivered but nothing came.",
        "I need to change the delivery address for order {order} to my place in {city}.",
        "I ordered a {item} but the package contained something else, please send the right one.",
        "Do you ship to {country}, and roughly how long does delivery take?",
        "Only part of my order arrived, the {item} is missing from the box.",
        "Is it possible to upgrade order {order} to express shipping?",
        "The courier left a 'sorry we missed you' note but I was home all day; how do I reschedule?",
        "My order {order} has been 'processing' for {days} days, when will it actually ship?",
        "My package is stuck in customs in {country}, do I need to pay import fees?",
        "Can I pick up order {order} from your warehouse instead of having it delivered?",
        "{carrier} says the address on {order} is incomplete, can you correct it on your side?",
        "I'm away next week, can you hold the shipment of my {item} until {date}?",
        "Which carrier is delivering order {order}? I'd like to set a safe place for the parcel.",
        "The delivery estimate for order {order} changed from {date} to 'unknown', what is going on?",
        "I ordered two items and they're shipping separately, will both arrive by {date}?",
    ],
    "refund_request": [
        "I'd like a refund for order {order}, the {item} stopped working after a week.",
        "Please refund the {amount} I paid for the {plan}, I haven't used it at all.",
        "I returned the {item} on {date}, when will I get my money back?",
        "The {item} arrived damaged and I want my money back, not a replacement.",
        "Can I get a refund for the annual plan? I bought it by mistake instead of monthly.",
        "I was charged {amount} for an item I sent back weeks ago, please refund it.",
        "How do I return order {order} for a full refund?",
        "Your 30-day money-back guarantee covers me, I signed up on {date}, so please process my refund.",
        "The workshop was called off, so I expect a full refund of the {amount} ticket price.",
        "The refund you promised on {date} still hasn't shown up on my card ending in {last4}.",
        "I want a partial refund because the {item} is missing a part.",
        "Please refund the {amount} shipping fee, the package arrived {days} days late.",
        "We were billed for {seats} seats we removed before the renewal, please refund the difference.",
        "The size is wrong, can I send the {item} back and get my money back?",
        "Refund request for order {order}: the item is not as described.",
        "I'd like my money back for last month; the service was down most of the time.",
        "I paid {amount} for express delivery but it came standard, please refund the difference.",
        "Please return the {amount} to my original payment method, I don't want store credit.",
    ],
    "cancellation": [
        "Please cancel my subscription, I don't need it anymore.",
        "How do I cancel my {plan} before it renews on {date}?",
        "I want to close my account and have all my data deleted.",
        "Please cancel order {order}, I picked the wrong {item}.",
        "We're moving to another tool, please switch off auto-renewal for our team.",
        "Cancel my membership effective immediately.",
        "I can't find a cancel button anywhere in the settings, please cancel the {plan} for me.",
        "I'm on the free trial and want to make sure I won't be charged, please cancel it.",
        "Our company is shutting down, so we need to terminate the contract at the end of this month.",
        "Please end my subscription at the end of the current billing period.",
        "Stop sending me the monthly box, I want to cancel the recurring delivery.",
        "I tried to unsubscribe but the page errors out, so please cancel it on your end.",
        "I no longer want order {order}, cancel it before it ships please.",
        "Kindly terminate the account registered to {email} and confirm in writing.",
        "The price went up to {amount}, so I'm cancelling. Please confirm the plan won't renew.",
        "We won't be renewing; please turn off auto-renew and remove our card from the account.",
        "I'd like to downgrade to nothing, i.e. cancel the {plan} altogether.",
    ],
    "feature_request": [
        "It would be great if you could add {feature}.",
        "Any plans to support {feature}? We'd use it every day.",
        "Feature request: {feature}.",
        "Could you build an integration with {integration}?",
        "Please consider adding {feature} to the {module}.",
        "We'd happily pay more for {feature}.",
        "Suggestion: let admins {admin_action}.",
        "I love the product, the one thing missing is {feature}.",
        "Would you consider a native {platform} app? The web version works, but a real app would help.",
        "Our team keeps asking for {feature}, is it on the roadmap?",
        "It'd save us hours if the {module} had {feature}.",
        "Can you make it possible to {admin_action}? Right now we do it by hand.",
        "Idea for the next release: {feature}.",
        "Please bring back the old {module} layout as an option, or at least add {feature}.",
        "I wish the {integration} integration also synced {sync_obj}.",
        "+1 for {feature}, the competitors all have it.",
        "Is there any chance of getting {feature} in the {plan}?",
    ],
    "security": [
        "I got an alert that someone logged into my account from {country}, and it wasn't me.",
        "There are orders on my account that I didn't place, I think I've been hacked.",
        "I received a suspicious email pretending to be from you and asking for my password.",
        "Someone changed my account email and password without my permission.",
        "I think I found a vulnerability in your {module}: {vuln}.",
        "Our API key was accidentally pushed to a public repository, please revoke it.",
        "Two-factor authentication was switched off on my account and I didn't do it.",
        "A former employee still has access to our workspace, please remove them immediately.",
        "I can see another customer's data in my {module}, this looks like a data leak.",
        "There's a session from an unknown {device} in my login history.",
        "We need your data processing agreement and details on how data is encrypted at rest.",
        "Someone is using my saved card ending in {last4} to buy things through my account.",
        "I got a text with a link claiming to be your support team, is that legit?",
        "Reporting a bug with security impact: your password reset links still work after being used.",
        "My password showed up in a breach notification, can you check whether my account was accessed?",
        "Unknown people were added as admins to our team account overnight.",
        "Your site shows an expired certificate warning on {subdomain}, is it safe to enter my card?",
    ],
}

# Optional follow-up sentences that add detail without changing the intent.
_DETAILS: dict[str, list[str]] = {
    "billing": [
        "The account is under {email}.",
        "Invoice number is {inv}.",
        "We are on the {plan}.",
        "I've attached a screenshot of the bank statement.",
        "This has happened two months in a row now.",
    ],
    "technical_issue": [
        "I'm using {browser} on {os}.",
        "I already cleared the cache and tried a private window.",
        "Reinstalling the app didn't help.",
        "It worked fine until {date}.",
        "Happens for everyone in our workspace, not just me.",
        "Console shows {error}.",
    ],
    "account_access": [
        "My username is {email}.",
        "I've tried on {browser} and on my {device}.",
        "I checked the spam folder too.",
        "I've had this account for years and all my projects are in it.",
    ],
    "shipping": [
        "I placed the order on {date}.",
        "The order number is {order}.",
        "It's a gift, so timing matters.",
        "The tracking page just says 'label created'.",
    ],
    "refund_request": [
        "Order number {order}.",
        "I still have the original packaging.",
        "I paid with the card ending in {last4}.",
        "I've attached photos.",
    ],
    "cancellation": [
        "The account email is {email}.",
        "We've exported everything we need already.",
        "Please send a confirmation once it's done.",
        "It's been a good experience overall.",
    ],
    "feature_request": [
        "Right now we export to a spreadsheet and do it manually.",
        "Happy to jump on a call and explain our use case.",
        "We have about {seats} users who would benefit.",
        "Other tools we use already have this.",
    ],
    "security": [
        "My account email is {email}.",
        "I haven't shared my password with anyone.",
        "I've attached the email headers.",
        "This happened around {time} last night.",
    ],
}

# Genuinely two-intent tickets. Real routing data has these, and annotators disagree on them; the
# label is whichever category the ticket was drawn for, so the same wording carries either label.
# This keeps the task from saturating at 100% (models can then still be told apart) while leaving
# the ceiling high (~97%).
_AMBIGUOUS_RATE = 0.06
_AMBIGUOUS: list[tuple[str, str, str]] = [
    (
        "I was charged twice for {amount} on {date}, please sort out the duplicate payment.",
        "billing",
        "refund_request",
    ),
    (
        "I'm still being charged for the {plan} after I thought I had ended it, please stop this.",
        "billing",
        "cancellation",
    ),
    ("Please cancel the {plan} and refund this month's {amount}.", "refund_request", "cancellation"),
    (
        "Order {order} never arrived and I want this resolved one way or another.",
        "shipping",
        "refund_request",
    ),
    (
        "I suddenly can't log in and my password doesn't work anymore, did something happen to my account?",
        "account_access",
        "security",
    ),
    (
        "Since the update the app signs me out every few minutes and I can't stay logged in.",
        "technical_issue",
        "account_access",
    ),
    (
        "Exporting to PDF cuts off the last column of wide tables, can that be changed?",
        "technical_issue",
        "feature_request",
    ),
    (
        "There's a charge of {amount} on my card ending in {last4} that I don't recognise.",
        "billing",
        "security",
    ),
    (
        "Order {order} still hasn't shipped after {days} days and I'm not sure I still want it.",
        "shipping",
        "cancellation",
    ),
    ("The payment page throws {error} when I try to pay my invoice.", "technical_issue", "billing"),
    (
        "Without {feature} this tool doesn't work for us and we'll have to leave.",
        "feature_request",
        "cancellation",
    ),
    (
        "The {item} from order {order} won't turn on straight out of the box.",
        "technical_issue",
        "refund_request",
    ),
]


# Passing mentions of *another* category's topic. Adding these makes the task need more than
# keyword matching: the label stays the ticket's own category.
_CONFUSERS: dict[str, list[str]] = {
    "billing": [
        "I can log in without any problem, it's only the charges that are wrong.",
        "I'm not asking for a refund, I just want the invoice corrected.",
        "I don't want to cancel, I just need the billing sorted out.",
        "Shipping was fine, this is only about the invoice.",
    ],
    "technical_issue": [
        "I know you're working on new features, but right now the basics are broken.",
        "My subscription and payment are all up to date.",
        "I don't want a refund, I just need it to work.",
        "The login works fine, the problem starts afterwards.",
    ],
    "account_access": [
        "I need to get in to download our invoices before month end.",
        "I don't think anyone hacked me, I simply can't get in.",
        "I have an order on the way and want to check the tracking.",
        "Please don't cancel anything, I still want the account.",
    ],
    "shipping": [
        "I don't want a refund, I just want to know where it is.",
        "I'd rather not cancel, I really need the {item}.",
        "The payment already went through on my card.",
        "Your website's order page works fine, it's the delivery that's the problem.",
    ],
    "refund_request": [
        "I'm not cancelling my account, I just want this one order refunded.",
        "A replacement is not an option for me.",
        "Delivery itself was quick, that's not the issue.",
        "I can log in and see the order, so no problem there.",
    ],
    "cancellation": [
        "I'm not asking for a refund for the months I already paid.",
        "If a refund for the unused days is possible that's nice, but the main thing is that it stops.",
        "The product itself works fine, we just don't need it anymore.",
        "Billing has always been correct, no complaints there.",
    ],
    "feature_request": [
        "Nothing is broken, this is just a suggestion.",
        "Billing and everything else works great.",
        "I'd happily keep paying for the {plan} if this was added.",
        "It's not a bug, the current behaviour is just limiting.",
    ],
    "security": [
        "I can still log in, but I'm worried.",
        "I'm not sure whether I should cancel my card as well.",
        "I've already changed my password as a precaution.",
        "No refund needed, I just want to know my data is safe.",
    ],
}

_URGENCY_SENTENCES: dict[str, list[str]] = {
    "high": [
        "This is urgent, please help ASAP.",
        "Please treat this as urgent.",
        "I need this resolved today.",
        "Please respond immediately.",
        "This is blocking our entire team right now.",
        "We're losing money every hour this isn't fixed.",
        "Need an answer within the hour, we have a client deadline.",
        "URGENT - please escalate.",
    ],
    "medium": [
        "Would appreciate a reply in the next day or two.",
        "Please look into it this week if you can.",
        "Let me know what the next steps are.",
        "Could you get back to me soon?",
        "Thanks for checking on this.",
    ],
    "low": [
        "No rush, whenever you get a chance.",
        "Not urgent at all.",
        "Just a heads up, no hurry.",
        "Whenever someone has a moment is fine.",
        "Low priority, just curious.",
        "Take your time.",
    ],
}
# Category-specific high-urgency lines, so "production down" sits with outages, not refunds.
_HIGH_EXTRA: dict[str, list[str]] = {
    "technical_issue": [
        "Production is down for all our users!",
        "Our whole store is offline because of this.",
    ],
    "account_access": ["I have a client presentation in an hour and all my files are in there."],
    "security": ["Please lock the account right away before more damage is done."],
    "shipping": ["I need it for an event tomorrow morning."],
    "billing": ["Our service gets suspended tomorrow if this isn't fixed."],
}
_ONELINER_TAG = {"high": ["URGENT: ", "asap!! ", "!!! "], "low": [" - no rush", " (not urgent)", " whenever"]}

# Urgency prior per category: security and outages skew high, suggestions skew low.
_URGENCY_WEIGHTS: dict[str, tuple[float, float, float]] = {  # low, medium, high
    "billing": (0.25, 0.5, 0.25),
    "technical_issue": (0.2, 0.4, 0.4),
    "account_access": (0.15, 0.45, 0.4),
    "shipping": (0.2, 0.5, 0.3),
    "refund_request": (0.3, 0.5, 0.2),
    "cancellation": (0.35, 0.5, 0.15),
    "feature_request": (0.65, 0.3, 0.05),
    "security": (0.1, 0.3, 0.6),
}

_GREETINGS = [
    "Hi,",
    "Hello,",
    "Hi there,",
    "Dear Support Team,",
    "Hey,",
    "Good morning,",
    "To whom it may concern,",
    "Hi {agent},",
    "Hello support,",
    "Dear Sir or Madam,",
]
_INTROS = [
    "I've been a customer since {year}.",
    "Hope you're doing well.",
    "I'm writing about my account {email}.",
    "I checked the help center first but couldn't find an answer.",
    "This is my second time writing about this.",
    "Quick question.",
    "I run a small team of {seats} people on your platform.",
]
_CLOSINGS = [
    "Thanks,",
    "Thank you,",
    "Best regards,",
    "Cheers,",
    "Kind regards,",
    "Regards,",
    "Thx,",
    "Best,",
]

_FIRST = [
    "Emma", "Liam", "Olivia", "Noah", "Ava", "Mateo", "Sofia", "Lucas", "Mia", "Ethan", "Priya", "Arjun",
    "Chen", "Yuki", "Fatima", "Omar", "Hannah", "Jonas", "Chloe", "Diego", "Grace", "Kwame", "Aisha",
    "Tom", "Laura", "Pierre", "Ingrid", "Marco", "Zoe", "Daniel",
]  # fmt: skip
_LAST = [
    "Smith", "Garcia", "Müller", "Rossi", "Kim", "Nguyen", "Patel", "Johnson", "Dubois", "Kowalski",
    "Okafor", "Silva", "Brown", "Tanaka", "Andersen", "Cohen", "Lopez", "Wilson", "Novak", "Haddad",
]  # fmt: skip
_COMPANIES = [
    "Acme Corp",
    "Brightside Studio",
    "Northpeak Labs",
    "Greenleaf Bakery",
    "Orbit Logistics",
    "Kiwi Media",
]
_PLANS = ["Pro plan", "Team plan", "Business plan", "Starter plan", "Premium plan", "Enterprise plan"]
_MODULES = [
    "dashboard",
    "reports page",
    "analytics tab",
    "invoice editor",
    "calendar view",
    "admin console",
    "inbox",
]
_BROWSERS = ["Chrome", "Firefox", "Safari", "Edge", "Brave"]
_OS = ["Windows 11", "macOS Sonoma", "Ubuntu 22.04", "iOS 17", "Android 14", "ChromeOS"]
_DEVICES = ["iPhone 14", "iPhone 15 Pro", "Pixel 8", "Galaxy S23", "iPad Air", "Android tablet", "MacBook"]
_INTEGRATIONS = [
    "Slack",
    "Salesforce",
    "Zapier",
    "Shopify",
    "Google Sheets",
    "HubSpot",
    "QuickBooks",
    "Notion",
]
_SSO = ["Okta", "Google Workspace", "Azure AD", "OneLogin"]
_ERRORS = ["ERR_502", "E-4012", "0x80070005", "ERR_TIMEOUT", "code 429", "E1003", "500 Internal Server Error"]
_ITEMS = [
    "wireless earbuds", "standing desk", "coffee grinder", "yoga mat", "desk lamp", "winter jacket",
    "phone case", "mechanical keyboard", "backpack", "blender", "running shoes", "smart watch",
]  # fmt: skip
_CARRIERS = ["UPS", "DHL", "FedEx", "USPS", "Royal Mail", "DPD"]
_CITIES = ["Austin", "Berlin", "Manchester", "Toronto", "Lyon", "Denver", "Dublin", "Seattle", "Madrid"]
_COUNTRIES = ["Canada", "Germany", "Brazil", "Australia", "Japan", "Norway", "Mexico", "India", "Poland"]
_FEATURES = [
    "dark mode", "bulk editing", "CSV export for reports", "recurring tasks", "custom fields",
    "a public API for invoices", "keyboard shortcuts", "multi-currency support", "two-level approvals",
    "offline mode", "scheduled reports", "a Gantt chart view", "SAML single sign-on", "audit logs export",
]  # fmt: skip
_ADMIN_ACTIONS = [
    "bulk-invite users from a CSV",
    "set default permissions per team",
    "lock templates so others can't edit them",
    "transfer ownership of projects",
    "see who viewed a document",
]
_SYNC_OBJ = ["attachments", "comments", "custom fields", "deleted records", "contact notes"]
_PLATFORMS = ["Windows", "Mac", "Linux", "Android", "iPad"]
_VULNS = [
    "the search box reflects script tags back into the page",
    "changing the id in the URL shows other users' invoices",
    "the file upload accepts .html files that then run in the browser",
    "the API returns password hashes in one response",
]
_SUBDOMAINS = ["pay.example-shop.com", "api.example-shop.com", "status.example-shop.com"]
_CODES = ["SPRING20", "WELCOME10", "NONPROFIT", "BLACKFRIDAY", "LOYAL15"]
_MONTHS = ["Jan", "Feb", "March", "April", "May", "June", "July", "Aug", "Sept", "Oct", "Nov", "Dec"]


def _money_pair(rng: random.Random) -> tuple[str, str]:
    """Two different amounts in the same currency ("billed X but the plan is Y" must differ)."""
    sym = rng.choice(["$", "$", "€", "£"])
    a, b = rng.sample([9.99, 19, 29, 49, 79.5, 99, 149, 199, 299, 499, 1200], 2)
    a *= rng.choice([1, 1, 2, 3])
    cents = rng.random() < 0.7
    return tuple(f"{sym}{v:,.2f}" if cents else f"{sym}{v:,.0f}" for v in (a, b))  # type: ignore[return-value]


def _date(rng: random.Random) -> str:
    style = rng.randrange(4)
    month, day = rng.randrange(12), rng.randint(1, 28)
    if style == 0:
        return f"{_MONTHS[month]} {day}"
    if style == 1:
        return f"{month + 1:02d}/{day:02d}"
    if style == 2:
        return f"the {day}{_suffix(day)}"
    return rng.choice(["Monday", "Tuesday", "last Friday", "yesterday", "last week", "the 1st"])


def _suffix(day: int) -> str:
    if 11 <= day <= 13:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")


def _slots(rng: random.Random) -> dict[str, str]:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    seats = rng.choice([3, 5, 8, 10, 12, 15, 25, 40])
    amount, amount2 = _money_pair(rng)
    return {
        "first": first,
        "name": f"{first} {last}",
        "email": f"{first.lower()}.{last.lower().replace('ü', 'ue')}@{rng.choice(['gmail.com', 'outlook.com', 'company.io', 'mail.de'])}",
        "company": rng.choice(_COMPANIES),
        "agent": rng.choice(["Sam", "Alex", "Jordan", "Maria", "team"]),
        "plan": rng.choice(_PLANS),
        "module": rng.choice(_MODULES),
        "browser": rng.choice(_BROWSERS),
        "os": rng.choice(_OS),
        "device": rng.choice(_DEVICES),
        "integration": rng.choice(_INTEGRATIONS),
        "sso": rng.choice(_SSO),
        "error": rng.choice(_ERRORS),
        "item": rng.choice(_ITEMS),
        "order": rng.choice(["#", "", "A-", "ORD-"]) + str(rng.randint(10000, 9999999)),
        "inv": f"INV-{rng.randint(2022, 2025)}-{rng.randint(1, 9999):04d}",
        "amount": amount,
        "amount2": amount2,
        "date": _date(rng),
        "time": f"{rng.randint(1, 12)}{rng.choice(['am', 'pm'])}",
        "last4": f"{rng.randint(0, 9999):04d}",
        "carrier": rng.choice(_CARRIERS),
        "tracking": rng.choice(["1Z", "JD", "TBA", "RR"]) + str(rng.randint(10**9, 10**11)),
        "days": str(rng.randint(3, 14)),
        "city": rng.choice(_CITIES),
        "country": rng.choice(_COUNTRIES),
        "seats": str(seats),
        "seats2": str(max(1, seats - rng.randint(1, 3))),
        "size": str(rng.choice([10, 25, 50, 100])),
        "secs": str(rng.choice([10, 20, 30, 60])),
        "pct": str(rng.choice([40, 60, 75, 90, 99])),
        "feature": rng.choice(_FEATURES),
        "admin_action": rng.choice(_ADMIN_ACTIONS),
        "sync_obj": rng.choice(_SYNC_OBJ),
        "platform": rng.choice(_PLATFORMS),
        "vuln": rng.choice(_VULNS),
        "subdomain": rng.choice(_SUBDOMAINS),
        "code": rng.choice(_CODES),
        "year": str(rng.randint(2015, 2023)),
    }


def _typo(rng: random.Random, text: str) -> str:
    """Introduce 1-2 realistic typos (swap, drop or double a letter) in longer words."""
    words = text.split(" ")
    candidates = [i for i, w in enumerate(words) if len(w) >= 5 and w.isalpha()]
    for i in rng.sample(candidates, k=min(len(candidates), rng.randint(1, 2))):
        w, j = words[i], rng.randrange(1, len(words[i]) - 1)
        kind = rng.randrange(3)
        if kind == 0:
            w = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
        elif kind == 1:
            w = w[:j] + w[j + 1 :]
        else:
            w = w[:j] + w[j] + w[j:]
        words[i] = w
    return " ".join(words)


def _urgency_sentence(rng: random.Random, category: str, urgency: str) -> str | None:
    # High urgency is always stated; medium/low are sometimes left implicit, as in real tickets.
    if urgency == "high":
        pool = _URGENCY_SENTENCES["high"] + _HIGH_EXTRA.get(category, []) * 2
        return rng.choice(pool)
    if urgency == "low":
        return rng.choice(_URGENCY_SENTENCES["low"]) if rng.random() < 0.85 else None
    return rng.choice(_URGENCY_SENTENCES["medium"]) if rng.random() < 0.5 else None


def _make_ticket(rng: random.Random, category: str) -> tuple[str, str, int]:
    """Return (text, urgency, index into ``_CORE[category]``, or -1 for a two-intent ticket)."""
    slots = _slots(rng)
    if rng.random() < _AMBIGUOUS_RATE:
        t_idx = -1  # not one of the category's own templates
        core = rng.choice([t for t, a, b in _AMBIGUOUS if category in (a, b)]).format(**slots)
    else:
        t_idx = rng.randrange(len(_CORE[category]))
        core = _CORE[category][t_idx].format(**slots)
    urgency = rng.choices(URGENCIES, weights=_URGENCY_WEIGHTS[category])[0]
    style = rng.choices(["oneliner", "short", "email"], weights=[0.25, 0.35, 0.4])[0]

    if style == "oneliner":
        text = core
        if rng.random() < 0.5:  # chat-style: lowercase, no final full stop
            text = text[0].lower() + text[1:]
            text = text.rstrip(".")
        if urgency == "high":
            tag = rng.choice(_ONELINER_TAG["high"])
            text = tag + text if tag.endswith(" ") else text + tag
        elif urgency == "low" and rng.random() < 0.8:
            text += rng.choice(_ONELINER_TAG["low"])
        elif urgency == "medium" and rng.random() < 0.3:
            text += " " + rng.choice(_URGENCY_SENTENCES["medium"])
    else:
        body = [core]
        if rng.random() < 0.6:
            body.append(rng.choice(_DETAILS[category]).format(**slots))
        if rng.random() < 0.35:
            confuser = rng.choice(_CONFUSERS[category]).format(**slots)
            # Before or after the core sentence, so position alone doesn't give the intent away.
            body.insert(rng.choice([0, len(body)]), confuser)
        urgent = _urgency_sentence(rng, category, urgency)
        if urgent:
            if rng.random() < 0.25:
                body.insert(0, urgent)
            else:
                body.append(urgent)
        if style == "short":
            text = " ".join(body)
            if rng.random() < 0.4:
                text = rng.choice(_GREETINGS).format(**slots) + " " + text
            if rng.random() < 0.3:
                text += " Thanks!"
        else:
            if rng.random() < 0.5:
                body.insert(0, rng.choice(_INTROS).format(**slots))
            signature = slots["name"] if rng.random() < 0.7 else slots["first"]
            if rng.random() < 0.3:
                signature += "\n" + slots["company"]
            text = (
                rng.choice(_GREETINGS).format(**slots)
                + "\n\n"
                + " ".join(body)
                + "\n\n"
                + rng.choice(_CLOSINGS)
                + "\n"
                + signature
            )
    if rng.random() < 0.15:
        text = _typo(rng, text)
    return text, urgency, t_idx


def generate(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` labelled tickets, deterministic for ``seed``.

    Categories cycle through a seeded shuffle in blocks of 8, so any prefix is near-balanced and
    ``generate(m, seed)[:n] == generate(n, seed)`` for ``m >= n`` (generate_splits relies on it).
    """
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    block: list[str] = []
    for i in range(n):
        if not block:
            block = CATEGORIES.copy()
            rng.shuffle(block)
        category = block.pop()
        text, urgency, _ = _make_ticket(rng, category)
        out.append({"id": f"tickets-{seed}-{i}", "text": text, "label": category, "urgency": urgency})
    return out
