"""The platform service: datanets, models, inference records, rewards and the chain relay behind one API."""
