"""Front-end plumbing shared by every widget: kernel comms on subshells, the plotly figure
loader, the renderer switch (live widget or static figure), the one throttle and drawing
thread, and every private name borrowed from another library (``borrowed``)."""
