"""Electron-optical constants and the unit bookkeeping of the reconstruction.

Owns: relativistic wavelength (and the energy of a wavelength) and interaction parameter, and the factors that turn a
COM map (detector pixels or mrad) and a scan step (Å or scan pixels) into riCOM / iCOM
in V·Å.
"""
from __future__ import annotations

import math

_M0 = 9.1093837015e-31  # electron rest mass [kg]
_E = 1.602176634e-19  # elementary charge [C]
_C = 299792458.0  # speed of light [m/s]
_H = 6.62607015e-34  # Planck constant [J s]


def wavelength_A(energy_keV: float) -> float:
    """Relativistic electron wavelength in Å.

    Examples
    --------
    >>> round(wavelength_A(300.0), 6)
    0.019687
    """
    u = energy_keV * 1e3
    return _H / math.sqrt(2 * _M0 * _E * u * (1 + _E * u / (2 * _M0 * _C**2))) * 1e10


def electron_energy_keV(wavelength_A: float) -> float:
    """The kinetic energy (keV) of electrons of wavelength ``wavelength_A`` (relativistic;
    the inverse of `wavelength_A`).

    Examples
    --------
    >>> round(electron_energy_keV(0.019687), 1)
    300.0
    """
    mc2_eV = _M0 * _C**2 / _E
    hc_eV_A = _H * _C / _E * 1e10
    return (math.hypot(hc_eV_A / wavelength_A, mc2_eV) - mc2_eV) / 1e3


def interaction_parameter(energy_keV: float) -> float:
    """Interaction parameter σ in rad/(V·Å) (phase shift per projected potential).

    Examples
    --------
    >>> round(interaction_parameter(300.0) * 1e4, 5)
    6.52616
    """
    u = energy_keV * 1e3
    mass = _M0 * (1 + _E * u / (_M0 * _C**2))
    lam_m = wavelength_A(energy_keV) * 1e-10
    return 2 * math.pi * mass * _E * lam_m / _H**2 * 1e-10


def rad_to_volt_angstrom(energy_keV: float) -> float:
    """Factor 2π/(λσ) that turns an integrated deflection (rad·Å) into V·Å."""
    return 2 * math.pi / (wavelength_A(energy_keV) * interaction_parameter(energy_keV))
