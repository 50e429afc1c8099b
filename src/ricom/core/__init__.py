"""The ground floor: parameters, units, errors, chunk types and geometry; imports nothing of ricom above it."""
