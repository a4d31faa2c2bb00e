DROP TABLE events;
DROP TABLE attempts;
