"""The converters ``python -m datasets.prepare`` knows, by dataset name."""

from __future__ import annotations

from datasets.prepare.aliccp import AliCCP
from datasets.prepare.aliexpress import AliExpress
from datasets.prepare.converter import Converter
from datasets.prepare.ijcai2015 import IJCAI2015
from datasets.prepare.kuairand import KuaiRandPure
from datasets.prepare.qbvideo import QBVideo
from datasets.prepare.userbehavior import UserBehavior

CONVERTERS: dict[str, type[Converter]] = {converter.name: converter for converter in (AliCCP, QBVideo, KuaiRandPure, AliExpress, IJCAI2015, UserBehavior)}
