"""ext.maps.booking.partner.v0: source and generated code."""
