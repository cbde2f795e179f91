"""Tenrec QB-Video (paper 001): ``QB-video.csv``, one row per user-video impression.

Columns as published: ``user_id,item_id,click,follow,like,share,video_category,watching_times,
gender,age``. Tasks: click, follow, like, share. Features (paper 001's 6): user_id, item_id,
video_category, watching_times, gender, age, all categorical (``watching_times`` is a small
count, embedded per value). One row is one sample; split 8:1:1 at random (paper 001).
"""

from __future__ import annotations

import argparse

from torchrec_automtl.datasets.prepare.converter import Converter, Layout, StageContext, Staged
from torchrec_automtl.datasets.prepare.csv_rows import read_csv_rows, stage_tables

FILE = "QB-video.csv"
HEADER = ("user_id", "item_id", "click", "follow", "like", "share", "video_category", "watching_times", "gender", "age")
FEATURES = ("user_id", "item_id", "video_category", "watching_times", "gender", "age")
TASKS = ("click", "follow", "like", "share")


class QBVideo(Converter):
    name = "qbvideo"
    summary = "Tenrec QB-Video: click, follow, like, share; random 8:1:1 split"

    def __init__(self, args: argparse.Namespace) -> None:
        pass

    def raw_files(self) -> list[str]:
        return [FILE]

    def stage(self, context: StageContext) -> Staged:
        tables = read_csv_rows(context, context.raw / FILE, HEADER, ids=FEATURES, labels=TASKS)
        files = stage_tables(context.staging / "rows.parquet", tables)
        return Staged(files, Layout(FEATURES, (), TASKS, group_column="user_id"))
