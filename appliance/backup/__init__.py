"""Backups of the database (`coffre backup|restore`) and of the lab token (`coffre token backup|restore`)."""

from appliance.backup.archive import BackupRefused
from appliance.backup.service import backup, restore
from appliance.backup.token import backup_token, restore_token

__all__ = ["BackupRefused", "backup", "backup_token", "restore", "restore_token"]
