"""Files nexus-app ships beside its code: the terminal app's stylesheet, the icon and the
example configuration. Installed as the package `nexus_app.assets`."""
