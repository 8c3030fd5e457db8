"""The course's own machinery: notebook runner, student-version generator, asset fetcher, site builder.

Nothing here is part of what a student learns about facial expression recognition;
it is what runs, grades and publishes the course.
"""
