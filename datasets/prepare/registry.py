"""The converters ``python -m torchrec_automtl.datasets.prepare`` knows, by dataset name."""

from __future__ import annotations

from torchrec_automtl.datasets.prepare.aliccp import AliCCP
from torchrec_automtl.datasets.prepare.aliexpress import AliExpress
from torchrec_automtl.datasets.prepare.converter import Converter
from torchrec_automtl.datasets.prepare.ijcai2015 import IJCAI2015
from torchrec_automtl.datasets.prepare.kuairand import KuaiRandPure
from torchrec_automtl.datasets.prepare.qbvideo import QBVideo
from torchrec_automtl.datasets.prepare.userbehavior import UserBehavior

CONVERTERS: dict[str, type[Converter]] = {converter.name: converter for converter in (AliCCP, QBVideo, KuaiRandPure, AliExpress, IJCAI2015, UserBehavior)}
