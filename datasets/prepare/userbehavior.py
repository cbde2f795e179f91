"""UserBehavior-2017 (Taobao, papers 000/001): ``UserBehavior.csv``, a header-less behaviour log.

Lines ``user_id,item_id,category_id,behavior_type,timestamp`` with behavior_type one of ``pv``,
``buy``, ``cart``, ``fav`` (anything else is a bad line) become samples as described in
``interactions`` (default one per (user, item) pair, users with >= 10 purchased items and items
with >= 10 buyers, paper 000). Tasks: click (pv), buy, cart, favourite. Features (3): user_id,
item_id, category_id. Random 8:1:1 split (paper 001).
"""

from __future__ import annotations

from torchrec_automtl.datasets.prepare.interactions import BehaviourLog, InteractionConverter

LOG = BehaviourLog(
    file="UserBehavior.csv",
    header=("user_id", "item_id", "category_id", "behavior_type", "timestamp"),
    has_header=False,
    item_features=("category_id",),
    behaviour="behavior_type",
    behaviours=("pv", "buy", "cart", "fav"),
    tasks={"click": "pv", "buy": "buy", "cart": "cart", "favourite": "fav"},
    purchase="buy",
)


class UserBehavior(InteractionConverter):
    name = "userbehavior"
    summary = "UserBehavior-2017 Taobao log: click, buy, cart, favourite per (user, item); purchase filters; random 8:1:1"
    log = LOG
    default_min_user_purchases = 10
    default_min_item_buyers = 10
