"""Keys whose templates python-pkcs11 cannot express, made through ctypes.

python-pkcs11 0.10 has no encoding for attribute-array attributes: asking it for
``CKA_UNWRAP_TEMPLATE`` raises ``NotImplementedError``. This module calls
``C_GenerateKey`` directly, on a session python-pkcs11 opened (same handle), and
returns the new object's handle; callers then find the object by its label
through python-pkcs11 and use it as any other key.
"""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING, Any

from pkcs11 import exceptions as p11

if TYPE_CHECKING:
    from hsm.keystore import Work

CKO_SECRET_KEY = 4
CKK_AES = 0x1F
CKM_AES_KEY_GEN = 0x1080
CKA = {
    "CLASS": 0x0,
    "TOKEN": 0x1,
    "PRIVATE": 0x2,
    "LABEL": 0x3,
    "KEY_TYPE": 0x100,
    "ID": 0x102,
    "SENSITIVE": 0x103,
    "ENCRYPT": 0x104,
    "DECRYPT": 0x105,
    "WRAP": 0x106,
    "UNWRAP": 0x107,
    "SIGN": 0x108,
    "VERIFY": 0x10A,
    "DERIVE": 0x10C,
    "VALUE_LEN": 0x161,
    "EXTRACTABLE": 0x162,
    "MODIFIABLE": 0x170,
    "COPYABLE": 0x171,
    "UNWRAP_TEMPLATE": 0x40000212,
}
_RETURN_CODES = {0x12: p11.AttributeTypeInvalid, 0x13: p11.AttributeValueInvalid, 0xD1: p11.TemplateInconsistent}


class _Attribute(ctypes.Structure):
    _fields_ = [("type", ctypes.c_ulong), ("pValue", ctypes.c_void_p), ("ulValueLen", ctypes.c_ulong)]


class _Mechanism(ctypes.Structure):
    _fields_ = [("mechanism", ctypes.c_ulong), ("pParameter", ctypes.c_void_p), ("ulParameterLen", ctypes.c_ulong)]


class _Template:
    """CK_ATTRIBUTE arrays whose buffers stay alive while the token reads them."""

    def __init__(self) -> None:
        self._keep: list[Any] = []

    def attr(self, name: str, value: Any) -> _Attribute:
        if isinstance(value, bool):
            buf: Any = ctypes.c_ubyte(1 if value else 0)
        elif isinstance(value, int):
            buf = ctypes.c_ulong(value)
        elif isinstance(value, bytes):
            buf = ctypes.create_string_buffer(value, len(value))
        else:
            buf = value  # a nested CK_ATTRIBUTE array
        self._keep.append(buf)
        return _Attribute(CKA[name], ctypes.cast(ctypes.byref(buf), ctypes.c_void_p), ctypes.sizeof(buf))

    def array(self, values: dict[str, Any]) -> Any:
        attrs = [self.attr(name, value) for name, value in values.items()]
        arr = (_Attribute * len(attrs))(*attrs)
        self._keep.append(arr)
        return arr


def generate_aes_with_unwrap_template(
    work: Work, label: bytes, key_id: bytes, token: bool, unwrap_template: dict[str, bool]
) -> int:
    """An AES-256 key that can only wrap and unwrap, never be read, copied or
    modified, and whose unwrapped keys must match ``unwrap_template``. Raises a
    python-pkcs11 error class when the token refuses (e.g. ``AttributeTypeInvalid``
    on a token without ``CKA_UNWRAP_TEMPLATE``)."""
    cdll = work.keystore.pool.module_cdll()
    t = _Template()
    template = t.array(
        {
            "CLASS": CKO_SECRET_KEY,
            "KEY_TYPE": CKK_AES,
            "VALUE_LEN": 32,
            "TOKEN": token,
            "PRIVATE": True,
            "SENSITIVE": True,
            "EXTRACTABLE": False,
            "MODIFIABLE": False,
            "COPYABLE": False,
            "ENCRYPT": False,
            "DECRYPT": False,
            "SIGN": False,
            "VERIFY": False,
            "DERIVE": False,
            "WRAP": True,
            "UNWRAP": True,
            "LABEL": label,
            "ID": key_id,
            "UNWRAP_TEMPLATE": t.array(dict(unwrap_template)),
        }
    )
    mechanism = _Mechanism(CKM_AES_KEY_GEN, None, 0)
    handle = ctypes.c_ulong(0)
    fn = cdll.C_GenerateKey
    fn.restype = ctypes.c_ulong
    fn.argtypes = [
        ctypes.c_ulong,
        ctypes.POINTER(_Mechanism),
        ctypes.POINTER(_Attribute),
        ctypes.c_ulong,
        ctypes.POINTER(ctypes.c_ulong),
    ]
    rv = fn(work.session.handle, ctypes.byref(mechanism), template, len(template), ctypes.byref(handle))
    if rv != 0:
        raise _RETURN_CODES.get(rv, p11.FunctionFailed)(f"C_GenerateKey returned 0x{rv:x}")
    return int(handle.value)
