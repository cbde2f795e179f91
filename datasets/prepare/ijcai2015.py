"""IJCAI-2015 Tmall repeat buyers (papers 000/001): ``data_format1`` behaviour log plus user profiles.

``user_log_format1.csv`` (header ``user_id,item_id,cat_id,seller_id,brand_id,time_stamp,action_type``;
action_type 0 click, 1 add-to-cart, 2 purchase, 3 add-to-favourite; brand_id may be empty) becomes
samples as described in ``interactions`` (default one per (user, item) pair, users with >= 20
purchased items and items with >= 10 buyers, paper 000). Tasks: favourite, purchase. Features (7):
user_id, item_id, cat_id, seller_id, brand_id, and age_range, gender joined from
``user_info_format1.csv`` (``user_id,age_range,gender``, empty values allowed, one line per user);
a user absent from it gets missing (OOV) features, counted in manifest.json. Random 8:1:1 split (paper 001).
"""

from __future__ import annotations

from torchrec_automtl.datasets.prepare.converter import StageContext, Staged
from torchrec_automtl.datasets.prepare.interactions import BehaviourLog, InteractionConverter, UserTable, stage_samples

LOG = BehaviourLog(
    file="user_log_format1.csv",
    header=("user_id", "item_id", "cat_id", "seller_id", "brand_id", "time_stamp", "action_type"),
    has_header=True,
    item_features=("cat_id", "seller_id", "brand_id"),
    behaviour="action_type",
    behaviours=("0", "1", "2", "3"),
    tasks={"favourite": "3", "purchase": "2"},
    purchase="2",
)
USER_FILE = "user_info_format1.csv"
USER_HEADER = ("user_id", "age_range", "gender")


class IJCAI2015(InteractionConverter):
    name = "ijcai2015"
    summary = "IJCAI-2015 Tmall log: favourite, purchase per (user, item); purchase filters; random 8:1:1 split"
    log = LOG
    default_min_user_purchases = 20
    default_min_item_buyers = 10

    def raw_files(self) -> list[str]:
        return [LOG.file, USER_FILE]

    def stage(self, context: StageContext) -> Staged:
        users = UserTable.read(context, context.raw / USER_FILE, USER_HEADER, file_index=1)
        return stage_samples(context, LOG, self.sampling, users)
