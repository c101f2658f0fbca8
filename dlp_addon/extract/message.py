"""What one HTTP request or WebSocket message carries: see :mod:`dlp_addon.extract.files`."""

from dlp_addon.extract.files import _BASE32_RUN as _BASE32_RUN
from dlp_addon.extract.files import _BASE64_RUN as _BASE64_RUN
from dlp_addon.extract.files import _HEX_RUN as _HEX_RUN
from dlp_addon.extract.files import _RUNS as _RUNS
from dlp_addon.extract.files import _TWENTIETH_LINE as _TWENTIETH_LINE
from dlp_addon.extract.files import Attachment as Attachment
from dlp_addon.extract.files import Extraction as Extraction
from dlp_addon.extract.files import HttpInput as HttpInput
from dlp_addon.extract.files import Part as Part
from dlp_addon.extract.files import _encoded_runs as _encoded_runs
from dlp_addon.extract.files import extract_http as extract_http
from dlp_addon.extract.files import extract_ws as extract_ws
