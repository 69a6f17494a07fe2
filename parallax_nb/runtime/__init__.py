"""What runs inside a rank or a parameter-server process (started by launch/)."""
