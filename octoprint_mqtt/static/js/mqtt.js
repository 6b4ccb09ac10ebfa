// The settings view model arrives with the settings page; OctoPrint binds the plain settings template meanwhile.
