"""Running the gateway as a service: systemd notification, logs, metrics, the status view,
the run-info file and the checks of `streembit-gateway doctor`."""
