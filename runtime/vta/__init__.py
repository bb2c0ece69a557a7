"""VTA: instruction set, encoding and the functional simulator (the spec of what VTA runs).

Imports numpy only; codegen.vta builds on these definitions.
"""
from .errors import VTADeadlockError, VTAEncodingError, VTAError, VTASimError
from .isa import (DEFAULT_CONFIG, Alu, AluOp, Finish, Gemm, Load, MemType, Opcode, Store, Uop, VTAConfig,
                  decode, decode_program, decode_uop, encode, encode_program, encode_uop, encode_uops)
from .simulator import SimStats, TimingModel, VTASimulator, simulate

__all__ = [
    "VTAError", "VTAEncodingError", "VTASimError", "VTADeadlockError", "VTAConfig", "DEFAULT_CONFIG",
    "Opcode", "MemType", "AluOp", "Load", "Store", "Gemm", "Alu", "Finish", "Uop", "encode", "decode",
    "encode_uop", "decode_uop", "encode_uops", "encode_program", "decode_program", "VTASimulator",
    "TimingModel", "SimStats", "simulate",
]
