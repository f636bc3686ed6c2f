"""Encrypted files in vaults (LockFiles): format, stores, service, gc."""

from appliance.files.format import StreamError
from appliance.files.service import Files, FileView
from appliance.files.stream import Download, Upload

__all__ = ["Download", "FileView", "Files", "StreamError", "Upload"]
