"""Exports for the field's own tools: EcoTaxa (human validation of the labels) and Darwin
Core Archives (OBIS / GBIF: abundances per volume). Particles are classified here exactly as
the live service classifies them (`classified.py`: the service's stage functions, model,
gallery and engine), and EcoTaxa's validated labels come back through `ecotaxa_read.py`
(`plankton-stream gallery add --from-ecotaxa`)."""
