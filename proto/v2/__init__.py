"""ext.maps.booking.partner.v2: source and generated code."""
